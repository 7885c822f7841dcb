//! Kernel stack addresses to function names, from `/proc/kallsyms`, cached per boot.
use std::{
    fs,
    io::{self, BufRead, BufReader},
    path::Path,
    sync::{Mutex, OnceLock},
    thread::JoinHandle,
};

use crate::boot_cache;

/// A sorted table of kernel text symbols.
pub struct Symbolizer {
    /// The kernel takes ~60 ms to produce /proc/kallsyms (120k lines here) and parsing it
    /// more: a thread loads the table while the workload runs, and the first lookup waits
    /// for it.
    reading: Mutex<Option<JoinHandle<Table>>>,
    table: OnceLock<Table>,
}

/// Text symbols sorted by address; the names live in one string (a String per symbol would
/// double the memory of a long-running monitor).
#[derive(Default, Debug, PartialEq)]
struct Table {
    /// (address, start of the name in `names`, its length)
    syms: Vec<(u64, u32, u32)>,
    names: String,
    /// Set when the table came from the cache: only addresses in these ranges (the kernel's
    /// text and each loaded module) resolve. Code made at run time (BPF programs,
    /// trampolines) is not in a cache and prints as an address.
    known: Option<Vec<(u64, u64)>>,
}

const KALLSYMS: &str = "/proc/kallsyms";
const MODULES: &str = "/proc/modules";
/// Far more than any kernel's table (~5 MB here): a bigger file is not ours.
const CACHE_MAX: u64 = 256 << 20;
/// Root-only (the addresses defeat KASLR), under `boot_cache`'s rules.
const CACHE_FILE: &str = "/run/captrace/kallsyms";
const CACHE_MAGIC: &[u8] = b"captrace kallsyms cache 1\n";

impl Symbolizer {
    /// A table of `/proc/kallsyms`: from the cache when the kernel's text cannot have
    /// changed since it was written (same boot, same modules at the same addresses), else
    /// from `/proc/kallsyms`, then cached. Addresses read as zero when `kptr_restrict` hides
    /// them; the table is then empty and every frame prints as an address. Nothing is read
    /// until `start` (or the first lookup).
    pub fn from_kallsyms() -> io::Result<Self> {
        fs::metadata(KALLSYMS)?;
        Ok(Symbolizer {
            reading: Mutex::new(None),
            table: OnceLock::new(),
        })
    }

    /// Starts reading the table on a thread. `record` and `run` call it only after forking
    /// the workload: a child forked beside a running thread may find a lock (the allocator's,
    /// stdio's) held forever by a thread that does not exist in it.
    pub fn start(&self) -> io::Result<()> {
        let Ok(mut reading) = self.reading.lock() else {
            return Ok(());
        };
        if reading.is_none() && self.table.get().is_none() {
            *reading = Some(
                std::thread::Builder::new()
                    .name("kallsyms".into())
                    .spawn(|| load(Path::new(CACHE_FILE)))?,
            );
        }
        Ok(())
    }

    fn table(&self) -> &Table {
        self.table.get_or_init(|| {
            let handle = self.reading.lock().ok().and_then(|mut h| h.take());
            match handle {
                Some(h) => h.join().unwrap_or_default(),
                None => load(Path::new(CACHE_FILE)),
            }
        })
    }

    pub fn parse(text: &str) -> Self {
        let table = OnceLock::new();
        let _ = table.set(Table::read(text.as_bytes()).0);
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
        if let Some(known) = &t.known
            && !known.iter().any(|&(lo, hi)| (lo..hi).contains(&addr))
        {
            return None;
        }
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

impl Drop for Symbolizer {
    /// A table nobody looked at is still finished, so that it is cached for the next run
    /// (the thread would die with the process otherwise).
    fn drop(&mut self) {
        if let Some(h) = self.reading.get_mut().ok().and_then(Option::take) {
            let _ = h.join();
        }
    }
}

/// The cache's key: what must not have changed for its addresses to hold.
fn cache_key() -> Option<Vec<u8>> {
    let mut key = boot_cache::boot_id()?;
    match fs::read(MODULES) {
        Ok(modules) => key.extend(modules),
        // A kernel built without module support.
        Err(e) if e.kind() == io::ErrorKind::NotFound => key.extend(b"no modules"),
        Err(_) => return None,
    }
    Some(key)
}

fn load(cache: &Path) -> Table {
    let key = cache_key();
    if let Some(t) = key.as_deref().and_then(|k| read_cache(cache, k)) {
        tracing::debug!(symbols = t.syms.len(), "kernel symbols from the cache");
        return t;
    }
    let (table, core) = match fs::File::open(KALLSYMS) {
        Ok(f) => Table::read(BufReader::new(f)),
        Err(e) => {
            tracing::warn!("cannot read {KALLSYMS}: {e}; call paths show as addresses");
            return Table::default();
        }
    };
    if let (Some(key), Some(core)) = (key, core) {
        let modules = fs::read_to_string(MODULES).unwrap_or_default();
        let known: Vec<(u64, u64)> = std::iter::once(core)
            .chain(module_ranges(&modules))
            .collect();
        if let Err(e) = write_cache(cache, &key, &table.restricted(known)) {
            tracing::debug!("kernel symbols not cached: {e}");
        }
    }
    table
}

/// `[base, base + size)` of each module in `/proc/modules` (`name size refs deps state
/// 0xADDRESS ...`).
fn module_ranges(modules: &str) -> impl Iterator<Item = (u64, u64)> + '_ {
    modules.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let size: u64 = f.get(1)?.parse().ok()?;
        let base = u64::from_str_radix(f.get(5)?.strip_prefix("0x")?, 16).ok()?;
        (base != 0).then(|| (base, base.saturating_add(size)))
    })
}

impl Table {
    /// Reads `ADDRESS TYPE NAME [MODULE]` lines, keeping text symbols with an address. Also
    /// gives the range the kernel's own text symbols span (those without a module).
    fn read(mut input: impl BufRead) -> (Table, Option<(u64, u64)>) {
        let mut table = Table::default();
        let mut core: Option<(u64, u64)> = None;
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
            if it.next().is_none() {
                // A function's end is not listed: the last one is given a page.
                let (lo, hi) = core.unwrap_or((addr, addr));
                core = Some((lo.min(addr), hi.max(addr.saturating_add(4096))));
            }
            let start = table.names.len() as u32;
            table.names.push_str(name);
            table.syms.push((addr, start, name.len() as u32));
        }
        table.syms.sort_unstable_by_key(|(a, _, _)| *a);
        table.syms.shrink_to_fit();
        table.names.shrink_to_fit();
        (table, core)
    }

    /// The symbols inside `known` only, limited to it.
    fn restricted(&self, known: Vec<(u64, u64)>) -> Table {
        let mut t = Table::default();
        for &(addr, start, len) in &self.syms {
            if known.iter().any(|&(lo, hi)| (lo..hi).contains(&addr)) {
                let name = &self.names[start as usize..(start + len) as usize];
                t.syms.push((addr, t.names.len() as u32, len));
                t.names.push_str(name);
            }
        }
        t.known = Some(known);
        t
    }
}

fn write_cache(path: &Path, key: &[u8], t: &Table) -> io::Result<()> {
    let mut out = Vec::with_capacity(t.syms.len() * 16 + t.names.len() + key.len() + 64);
    out.extend_from_slice(CACHE_MAGIC);
    let mut put = |bytes: &[u8]| {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    };
    put(key);
    let known = t.known.as_deref().unwrap_or_default();
    put(&known
        .iter()
        .flat_map(|&(lo, hi)| [lo.to_le_bytes(), hi.to_le_bytes()])
        .flatten()
        .collect::<Vec<u8>>());
    put(&t
        .syms
        .iter()
        .flat_map(|&(a, s, l)| {
            a.to_le_bytes()
                .into_iter()
                .chain(s.to_le_bytes())
                .chain(l.to_le_bytes())
        })
        .collect::<Vec<u8>>());
    put(t.names.as_bytes());
    // Written aside and renamed: a concurrent captrace reads the old file or the new one.
    boot_cache::write(path, &out)
}

/// The cached table, if the file is whole and its key is `key`.
fn read_cache(path: &Path, key: &[u8]) -> Option<Table> {
    let data = match boot_cache::read(path, CACHE_MAX) {
        Ok(data) => data,
        Err(boot_cache::Untrusted::Dir) => {
            tracing::debug!("kernel symbol cache not used: its directory is not root's alone");
            return None;
        }
        Err(boot_cache::Untrusted::File) => return None,
    };
    let mut rest = data.strip_prefix(CACHE_MAGIC)?;
    let mut take = || {
        let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let field = rest.get(8..8usize.checked_add(len)?)?;
        rest = &rest[8 + len..];
        Some(field)
    };
    if take()? != key {
        return None;
    }
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
    let ranges = take()?;
    let syms = take()?;
    let names = String::from_utf8(take()?.to_vec()).ok()?;
    if ranges.len() % 16 != 0 || syms.len() % 16 != 0 {
        return None;
    }
    let known = ranges
        .chunks_exact(16)
        .map(|c| (u64_at(c, 0), u64_at(c, 8)))
        .collect();
    let syms: Vec<(u64, u32, u32)> = syms
        .chunks_exact(16)
        .map(|c| (u64_at(c, 0), u32_at(c, 8), u32_at(c, 12)))
        .collect();
    let whole = syms.windows(2).all(|w| w[0].0 <= w[1].0)
        && syms.iter().all(|&(_, s, l)| {
            names
                .get(s as usize..(s as usize).saturating_add(l as usize))
                .is_some()
        });
    whole.then_some(Table {
        syms,
        names,
        known: Some(known),
    })
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

    const KALLSYMS_TEXT: &str = "ffffffff81000000 T _stext\nffffffff81000100 T cap_capable\n\
        ffffffff81000200 t ns_capable_common\nffffffffc0001000 t ovl_getattr\t[overlay]\n\
        ffffffffc0109000 t bpf_prog_0123456789abcdef_cap_capable_tp_btf\t[bpf]\n";
    const MODULES_TEXT: &str = "overlay 212992 1 - Live 0xffffffffc0000000\n\
        hidden 4096 0 - Live 0x0000000000000000\n";

    #[test]
    fn the_cache_keeps_kernel_and_module_text_and_drops_run_time_code() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/kallsyms");
        let (full, core) = Table::read(KALLSYMS_TEXT.as_bytes());
        assert_eq!(core, Some((0xffffffff81000000, 0xffffffff81001200)));
        let ranges: Vec<_> = module_ranges(MODULES_TEXT).collect();
        assert_eq!(ranges, [(0xffffffffc0000000, 0xffffffffc0034000)]);
        let known = std::iter::once(core.unwrap()).chain(ranges).collect();
        write_cache(&path, b"boot-1", &full.restricted(known)).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let cached = read_cache(&path, b"boot-1").unwrap();
        let s = Symbolizer {
            reading: Mutex::new(None),
            table: OnceLock::from(cached),
        };
        assert_eq!(s.lookup(0xffffffff81000150), Some("cap_capable"));
        assert_eq!(s.lookup(0xffffffffc0001010), Some("ovl_getattr"));
        // A BPF program is not in the cache, and is not taken for the module before it.
        assert_eq!(s.lookup(0xffffffffc0109010), None);
        assert_eq!(s.frames(&[0xffffffffc0109010])[0], "0xffffffffc0109010");
        // The full read knows it.
        let full = Symbolizer::parse(KALLSYMS_TEXT);
        assert_eq!(
            full.lookup(0xffffffffc0109010),
            Some("bpf_prog_0123456789abcdef_cap_capable_tp_btf")
        );

        // Another boot, or another set of modules, is a miss; so is a damaged file.
        assert!(read_cache(&path, b"boot-2").is_none());
        let data = fs::read(&path).unwrap();
        fs::write(&path, &data[..data.len() - 3]).unwrap();
        assert!(read_cache(&path, b"boot-1").is_none());
        fs::write(&path, b"").unwrap();
        assert!(read_cache(&path, b"boot-1").is_none());
    }

    #[test]
    fn a_cache_others_can_write_or_redirect_is_never_used() {
        use std::os::unix::fs::{PermissionsExt as _, symlink};
        let (full, core) = Table::read(KALLSYMS_TEXT.as_bytes());
        let table = || full.restricted(vec![core.unwrap()]);
        let mode = |p: &Path, m| fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();

        // A directory anyone can write (pre-created 0777 by another user, say): a good cache
        // in it is ignored, and nothing is written there.
        let dir = tempfile::tempdir().unwrap();
        let open_dir = dir.path().join("open");
        let path = open_dir.join("kallsyms");
        write_cache(&path, b"k", &table()).unwrap();
        assert!(read_cache(&path, b"k").is_some());
        mode(&open_dir, 0o777);
        assert!(read_cache(&path, b"k").is_none());
        fs::remove_file(&path).unwrap();
        assert!(write_cache(&path, b"k", &table()).is_err());
        assert_eq!(fs::read_dir(&open_dir).unwrap().count(), 0);
        mode(&open_dir, 0o770);
        assert!(write_cache(&path, b"k", &table()).is_err());

        // The directory itself a symlink to a good one: not used.
        let good = dir.path().join("good");
        write_cache(&good.join("kallsyms"), b"k", &table()).unwrap();
        let linked = dir.path().join("linked");
        symlink(&good, &linked).unwrap();
        assert!(read_cache(&linked.join("kallsyms"), b"k").is_none());
        assert!(write_cache(&linked.join("kallsyms"), b"k", &table()).is_err());

        // A symlink planted at the cache's name: not read through, and replaced (not written
        // through) when the cache is written.
        let victim = dir.path().join("victim");
        fs::copy(good.join("kallsyms"), &victim).unwrap();
        fs::remove_file(good.join("kallsyms")).unwrap();
        symlink(&victim, good.join("kallsyms")).unwrap();
        assert!(read_cache(&good.join("kallsyms"), b"k").is_none());
        let before = fs::read(&victim).unwrap();
        write_cache(&good.join("kallsyms"), b"other", &table()).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), before);
        assert!(
            !fs::symlink_metadata(good.join("kallsyms"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        // A cache file others may write is not used either.
        mode(&good.join("kallsyms"), 0o666);
        assert!(read_cache(&good.join("kallsyms"), b"other").is_none());
    }

    #[test]
    fn hidden_addresses_give_an_empty_table() {
        assert!(Symbolizer::parse("0000000000000000 T a\n").is_empty());
    }
}
