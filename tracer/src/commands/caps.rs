//! `captrace caps`: every capability this kernel knows, whether Docker grants it by default and
//! what it allows.
use std::io::{self, Write};

use anyhow::Context;
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::{
    capability::{self, Cap, TABLE},
    cli::CapsArgs,
};

/// What `allows` says of a capability the kernel has and captrace's table does not.
const UNKNOWN: &str = "unknown to captrace";

/// One capability, as listed in the table and in `--json`.
#[derive(Debug, Serialize)]
pub struct CapRow {
    pub number: u8,
    /// Docker style (`CHOWN`); `CAP_41` style for numbers captrace does not know.
    pub name: String,
    pub kernel_name: String,
    pub docker_default: bool,
    pub allows: &'static str,
}

pub fn run(args: &CapsArgs) -> anyhow::Result<u8> {
    let last_cap = capability::kernel_last_cap().unwrap_or_else(|| {
        tracing::warn!("cannot read /proc/sys/kernel/cap_last_cap; listing captrace's own table");
        (TABLE.len() - 1) as u8
    });
    let text = render(&rows(last_cap), args.json);
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("cannot write the capability list to stdout")?;
    Ok(0)
}

/// Capabilities 0 to `last_cap` inclusive.
pub fn rows(last_cap: u8) -> Vec<CapRow> {
    (0..=last_cap)
        .map(Cap)
        .map(|cap| CapRow {
            number: cap.0,
            name: cap.name(),
            kernel_name: cap.kernel_name(),
            docker_default: cap.docker_default(),
            allows: cap.info().map_or(UNKNOWN, |i| i.allows),
        })
        .collect()
}

/// A plain ASCII table, or with `json` a JSON array of the rows; ends with a newline.
pub fn render(rows: &[CapRow], json: bool) -> String {
    if json {
        let mut text = serde_json::to_string_pretty(rows).expect("rows always serialise");
        text.push('\n');
        return text;
    }
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["NUMBER", "NAME", "DOCKER DEFAULT", "ALLOWS"]);
    for row in rows {
        let docker = if row.docker_default { "yes" } else { "no" };
        table.add_row([
            &row.number.to_string(),
            &row.kernel_name,
            docker,
            row.allows,
        ]);
    }
    // Columns like `docker ps`: flush left, two spaces apart.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    format!("{}\n", table.trim_fmt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_capability_up_to_last_cap() {
        let rows = rows(40);
        assert_eq!(rows.len(), 41);
        assert_eq!(rows[0].kernel_name, "CAP_CHOWN");
        assert!(rows[0].docker_default);
        assert_eq!(rows[21].name, "SYS_ADMIN");
        assert!(!rows[21].docker_default);
        assert_eq!(rows[40].kernel_name, "CAP_CHECKPOINT_RESTORE");
        assert_eq!(rows.iter().filter(|r| r.docker_default).count(), 14);
    }

    #[test]
    fn numbers_beyond_the_table_are_unknown() {
        let rows = rows(42);
        assert_eq!(rows.len(), 43);
        for (row, n) in rows[41..].iter().zip(41..) {
            assert_eq!(row.number, n);
            assert_eq!(row.kernel_name, format!("CAP_{n}"));
            assert!(!row.docker_default);
            assert_eq!(row.allows, UNKNOWN);
        }
    }

    #[test]
    fn table_has_one_line_per_capability() {
        let text = render(&rows(41), false);
        let chown = text.lines().find(|l| l.contains("CAP_CHOWN")).unwrap();
        assert!(
            chown.contains("yes") && chown.contains("change the owner"),
            "{chown}"
        );
        let admin = text.lines().find(|l| l.contains("CAP_SYS_ADMIN")).unwrap();
        assert!(admin.contains(" no "), "{admin}");
        let unknown = text.lines().find(|l| l.contains("CAP_41")).unwrap();
        assert!(unknown.contains(UNKNOWN), "{unknown}");
        assert!(!text.contains('\x1b'), "no colours:\n{text}");
    }

    #[test]
    fn json_is_an_array_of_objects() {
        let value: serde_json::Value = serde_json::from_str(&render(&rows(41), true)).unwrap();
        let array = value.as_array().unwrap();
        assert_eq!(array.len(), 42);
        assert_eq!(
            array[0],
            serde_json::json!({
                "number": 0, "name": "CHOWN", "kernel_name": "CAP_CHOWN", "docker_default": true,
                "allows": "change the owner and group of any file"
            })
        );
        assert_eq!(array[41]["name"], "CAP_41");
        assert_eq!(array[41]["allows"], UNKNOWN);
    }
}
