//! The `process.capabilities` fragment of an OCI runtime `config.json`.
use serde::Serialize;

use crate::capability::Cap;

#[derive(Serialize)]
struct Fragment {
    process: Process,
}

#[derive(Serialize)]
struct Process {
    capabilities: Capabilities,
}

/// The OCI spec's `LinuxCapabilities`; fields in the spec's order.
#[derive(Serialize)]
struct Capabilities {
    bounding: Vec<String>,
    effective: Vec<String>,
    permitted: Vec<String>,
    inheritable: Vec<String>,
    ambient: Vec<String>,
}

pub(super) fn render(caps: &[Cap]) -> String {
    let names: Vec<String> = caps.iter().map(|c| c.kernel_name()).collect();
    let fragment = Fragment {
        process: Process {
            capabilities: Capabilities {
                bounding: names.clone(),
                effective: names.clone(),
                permitted: names,
                inheritable: Vec::new(),
                ambient: Vec::new(),
            },
        },
    };
    // Pretty: the fragment is meant to be merged into a config.json by hand.
    let mut json = serde_json::to_string_pretty(&fragment).expect("strings always serialise");
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    use crate::formats::{Format, render_names};

    #[test]
    fn renders_process_capabilities() {
        assert_eq!(
            render_names(Format::Oci, &[]),
            r#"{
  "process": {
    "capabilities": {
      "bounding": [],
      "effective": [],
      "permitted": [],
      "inheritable": [],
      "ambient": []
    }
  }
}
"#
        );
        assert_eq!(
            render_names(Format::Oci, &["CHOWN"]),
            r#"{
  "process": {
    "capabilities": {
      "bounding": [
        "CAP_CHOWN"
      ],
      "effective": [
        "CAP_CHOWN"
      ],
      "permitted": [
        "CAP_CHOWN"
      ],
      "inheritable": [],
      "ambient": []
    }
  }
}
"#
        );
        let json = render_names(Format::Oci, &["NET_BIND_SERVICE", "CHOWN", "CHOWN"]);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let both = serde_json::json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
        assert_eq!(
            value,
            serde_json::json!({"process": {"capabilities": {
                "bounding": both, "effective": both, "permitted": both,
                "inheritable": [], "ambient": []
            }}})
        );
    }
}
