//! Kernel stack addresses to function names, from `/proc/kallsyms`.
use std::{fs, io, sync::OnceLock};

/// A sorted table of kernel text symbols.
pub struct Symbolizer {
    /// Read on first use: parsing 120k lines costs tens of milliseconds that a short
    /// recording should not pay before its command starts.
    syms: OnceLock<Vec<(u64, String)>>,
}

const KALLSYMS: &str = "/proc/kallsyms";

impl Symbolizer {
    /// `/proc/kallsyms`, read when first needed. Addresses read as zero when `kptr_restrict`
    /// hides them; the symbolizer is then empty and every frame prints as an address.
    pub fn from_kallsyms() -> io::Result<Self> {
        fs::metadata(KALLSYMS)?;
        Ok(Symbolizer {
            syms: OnceLock::new(),
        })
    }

    fn syms(&self) -> &[(u64, String)] {
        self.syms
            .get_or_init(|| match fs::read_to_string(KALLSYMS) {
                Ok(text) => Self::table(&text),
                Err(e) => {
                    tracing::warn!("cannot read {KALLSYMS}: {e}; call paths show as addresses");
                    Vec::new()
                }
            })
    }

    pub fn parse(text: &str) -> Self {
        let syms = OnceLock::new();
        let _ = syms.set(Self::table(text));
        Symbolizer { syms }
    }

    fn table(text: &str) -> Vec<(u64, String)> {
        let mut syms: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut it = line.split_whitespace();
                let addr = u64::from_str_radix(it.next()?, 16).ok()?;
                let kind = it.next()?;
                let name = it.next()?;
                (addr != 0 && matches!(kind, "t" | "T" | "w" | "W"))
                    .then(|| (addr, name.to_string()))
            })
            .collect();
        syms.sort_unstable_by_key(|(a, _)| *a);
        syms
    }

    pub fn is_empty(&self) -> bool {
        self.syms().is_empty()
    }

    /// The function containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&str> {
        let syms = self.syms();
        let i = syms.partition_point(|(a, _)| *a <= addr);
        (i > 0).then(|| syms[i - 1].1.as_str())
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
