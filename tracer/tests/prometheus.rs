//! End to end with a real Prometheus: Debian's `prometheus` server on loopback scrapes a real
//! `captrace monitor --metrics`, with deploy/prometheus-rules.yml loaded, while a real docker
//! container chowns; the PromQL HTTP API must then answer the container's CHOWN counter and
//! the recording rule built on it.
mod support;

use std::{
    fs,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

/// Kills (SIGKILL) and reaps the child when dropped, so a failed assertion leaves nothing
/// running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET http://ADDR/api/v1/query?query=Q` through curl: the `data.result` array.
fn query(addr: &str, promql: &str) -> Vec<Value> {
    let out = Command::new("curl")
        .args([
            "-sfG",
            &format!("http://{addr}/api/v1/query"),
            "--data-urlencode",
        ])
        .arg(format!("query={promql}"))
        .output()
        .expect("running curl");
    if !out.status.success() {
        return Vec::new();
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls `promql` every 500 ms until it has a result, at most until `deadline`.
fn wait_for_series(addr: &str, promql: &str, deadline: Instant, log: &Path) -> Vec<Value> {
    loop {
        let result = query(addr, promql);
        if !result.is_empty() {
            return result;
        }
        if Instant::now() > deadline {
            let targets = Command::new("curl")
                .args(["-s", &format!("http://{addr}/api/v1/targets")])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            panic!(
                "no series for {promql} before the deadline\ntargets: {targets}\nprometheus log:\n{}",
                fs::read_to_string(log).unwrap_or_default()
            );
        }
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "needs root (cargo xtask test runs it)"]
fn prometheus_scrapes_monitor_end_to_end() {
    let _docker = support::docker_session();
    let dir = support::tempdir();
    let metrics = format!("127.0.0.1:{}", support::free_port());
    let web = format!("127.0.0.1:{}", support::free_port());

    let monitor = Reaped(
        Command::new(support::captrace_bin())
            .args(["monitor", "--json", "--metrics", &metrics])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting captrace monitor"),
    );
    support::bpf::links_once_attached(monitor.0.id());

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus-rules.yml");
    let config = dir.path().join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
rule_files:\n  - {}\n\
scrape_configs:\n  - job_name: captrace\n    static_configs:\n      - targets: ['{metrics}']\n",
            rules
                .canonicalize()
                .expect("deploy/prometheus-rules.yml")
                .display()
        ),
    )
    .unwrap();
    let log = dir.path().join("prometheus.log");
    let prometheus = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting prometheus (install it with `cargo xtask setup`)"),
    );
    let scale = support::time_scale();
    let deadline = Instant::now() + Duration::from_secs(60) * scale;
    wait_for_series(&web, "up{job=\"captrace\"} == 1", deadline, &log);

    let name = format!("ct-prom-{}", std::process::id());
    // Long enough for monitor to name it (docker's on-disk config) and Prometheus to scrape it.
    let run = Command::new("docker")
        .args(support::chown_container(&name, "sleep 4"))
        .stdin(Stdio::null())
        .output()
        .expect("running docker");
    assert!(
        run.status.success(),
        "docker run: {}",
        String::from_utf8_lossy(&run.stderr)
    );

    let series = format!(
        "captrace_capability_checks_total{{capability=\"CHOWN\",container_name=\"{name}\",origin=\"workload\"}}"
    );
    let deadline = Instant::now() + Duration::from_secs(60) * scale;
    let result = wait_for_series(&web, &series, deadline, &log);
    let metric = &result[0]["metric"];
    assert_eq!(metric["runtime"], "docker", "{result:?}");
    assert_eq!(metric["verdict"], "granted", "{result:?}");
    assert_eq!(metric["audit"], "audited", "{result:?}");
    assert_eq!(metric["job"], "captrace", "{result:?}");
    let value: f64 = result[0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {result:?}"));
    assert!(value >= 1.0, "{result:?}");
    eprintln!("prometheus answered {series} = {value}");
    // The shipped recording rule is evaluated on it.
    let recorded = wait_for_series(
        &web,
        &format!(
            "captrace:capability_used:rate5m{{capability=\"CHOWN\",container_name=\"{name}\"}}"
        ),
        deadline,
        &log,
    );
    assert_eq!(recorded[0]["metric"]["runtime"], "docker", "{recorded:?}");
    drop(prometheus);
    drop(monitor);
}
