//! Kernel stack addresses to function names, from `/proc/kallsyms`.
use std::{
    fs,
    io::{self, BufRead, BufReader},
    sync::{Mutex, OnceLock},
    thread::JoinHandle,
};

/// A sorted table of kernel text symbols.
pub struct Symbolizer {
    /// The kernel takes tens of milliseconds to produce /proc/kallsyms (120k lines here) and
    /// parsing it more: a thread reads it while the workload runs, and the first lookup
    /// waits for it.
    reading: Mutex<Option<JoinHandle<Table>>>,
    table: OnceLock<Table>,
}

/// Text symbols sorted by address; the names live in one string (a String per symbol would
/// double the memory of a long-running monitor).
#[derive(Default)]
struct Table {
    /// (address, start of the name in `names`, its length)
    syms: Vec<(u64, u32, u32)>,
    names: String,
}

const KALLSYMS: &str = "/proc/kallsyms";

impl Symbolizer {
    /// Starts reading `/proc/kallsyms`: call it once the programs are attached, so their own
    /// symbols are in it. Addresses read as zero when `kptr_restrict` hides them; the table is
    /// then empty and every frame prints as an address.
    pub fn from_kallsyms() -> io::Result<Self> {
        fs::metadata(KALLSYMS)?;
        let reading = std::thread::Builder::new()
            .name("kallsyms".into())
            .spawn(|| match fs::File::open(KALLSYMS) {
                Ok(f) => Table::read(BufReader::new(f)),
                Err(e) => {
                    tracing::warn!("cannot read {KALLSYMS}: {e}; call paths show as addresses");
                    Table::default()
                }
            })?;
        Ok(Symbolizer {
            reading: Mutex::new(Some(reading)),
            table: OnceLock::new(),
        })
    }

    fn table(&self) -> &Table {
        self.table.get_or_init(|| {
            let handle = self.reading.lock().ok().and_then(|mut h| h.take());
            handle.and_then(|h| h.join().ok()).unwrap_or_default()
        })
    }

    pub fn parse(text: &str) -> Self {
        let table = OnceLock::new();
        let _ = table.set(Table::read(text.as_bytes()));
        Symbolizer {
            reading: Mutex::new(None),
            table,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.table().syms.is_empty()
    }

    /// The function containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let t = self.table();
        let i = t.syms.partition_point(|(a, _, _)| *a <= addr);
        let (_, start, len) = *t.syms.get(i.checked_sub(1)?)?;
        t.names.get(start as usize..(start + len) as usize)
    }

    /// Names of the frames, innermost first; unknown addresses as hex.
    pub fn frames(&self, addrs: &[u64]) -> Vec<String> {
        addrs
            .iter()
            .map(|&a| {
                self.lookup(a)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{a:#x}"))
            })
            .collect()
    }
}

impl Table {
    /// Reads `ADDRESS TYPE NAME [MODULE]` lines, keeping text symbols with an address.
    fn read(mut input: impl BufRead) -> Table {
        let mut table = Table::default();
        let mut line = String::new();
        loop {
            line.clear();
            match input.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let mut it = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 || !matches!(kind, "t" | "T" | "w" | "W") {
                continue;
            }
            let start = table.names.len() as u32;
            table.names.push_str(name);
            table.syms.push((addr, start, name.len() as u32));
        }
        table.syms.sort_unstable_by_key(|(a, _, _)| *a);
        table.syms.shrink_to_fit();
        table.names.shrink_to_fit();
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_enclosing_function() {
        let s = Symbolizer::parse(
            "ffffffff81000100 T b\nffffffff81000000 T a\nffffffff82000000 D data\nffffffff81000200 t c [mod]\n",
        );
        assert_eq!(s.lookup(0xffffffff81000000), Some("a"));
        assert_eq!(s.lookup(0xffffffff810000ff), Some("a"));
        assert_eq!(s.lookup(0xffffffff81000150), Some("b"));
        assert_eq!(s.lookup(0xffffffff81000250), Some("c"));
        assert_eq!(s.lookup(0xffffffff80000000), None);
        assert_eq!(
            s.frames(&[0xffffffff81000100, 0x10]),
            vec!["b".to_string(), "0x10".to_string()]
        );
    }

    #[test]
    fn hidden_addresses_give_an_empty_table() {
        assert!(Symbolizer::parse("0000000000000000 T a\n").is_empty());
    }
}
