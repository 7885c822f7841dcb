//! The per-CPU cache of check counts in front of `USAGE` (issue 17): a direct-mapped array of
//! slots per CPU, each owned for good by the first key that lands on it on that CPU. A check
//! whose key owns its slot costs an array lookup (inlined by the verifier) and two compares
//! instead of a hash of the 16-byte key and a bucket walk; a key whose slot another key owns
//! falls through to `USAGE`. A key's exact count is the sum of its slots (one per CPU at most)
//! and its `USAGE` entry, which user space adds up.
use crate::UsageKey;

/// Slots per CPU (a power of two). Each is read by user space with one syscall per count poll,
/// so the array stays small: the keys of a workload are few, and the hot ones are seen early.
pub const SLOTS: u32 = 256;
/// Environment variable that makes the kernel side use only the first N slots (a power of two
/// up to `SLOTS`; the loader writes N - 1 to the `USAGE_CACHE_MASK` global): with 1, every key
/// lands on one slot per CPU, so tests see keys that share a slot fall through to `USAGE`.
pub const SLOTS_ENV: &str = "CAPTRACE_USAGE_CACHE_SLOTS";
const SLOT_BITS: u32 = SLOTS.trailing_zeros();

/// One slot: the key that owns it, and its count on this CPU. A count of 0 is a free slot.
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct CountSlot {
    pub key: UsageKey,
    pub count: u64,
}

impl UsageKey {
    /// The key as the two words it is stored in (workload, then the rest): compared and hashed
    /// as such in the kernel, where a field-by-field compare costs eight branches.
    #[inline(always)]
    pub fn words(&self) -> [u64; 2] {
        // SAFETY: `UsageKey` is `#[repr(C)]`, 16 bytes, every byte a field (`_pad` included).
        unsafe { core::mem::transmute::<UsageKey, [u64; 2]>(*self) }
    }

    /// The key's slot in a cache of `SLOTS` slots (the kernel side masks it with
    /// `USAGE_CACHE_MASK`): a multiplicative hash of its two words.
    #[inline(always)]
    pub fn cache_slot(&self) -> u32 {
        let [workload, rest] = self.words();
        let h = (workload ^ rest.rotate_left(29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - SLOT_BITS)) as u32
    }
}

/// Whether a slot user space read holds a count, and of which key. A slot is claimed by writing
/// the rest of the key, then the workload, then the count (the kernel side never caches
/// workload 0); a slot read while being claimed shows a zero workload or a zero count and is
/// skipped: it is counted at the next read.
pub fn held(slot: &CountSlot) -> Option<(UsageKey, u64)> {
    (slot.count != 0 && slot.key.workload != 0).then_some((slot.key, slot.count))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(workload: u64, syscall: i16, cap: u8) -> UsageKey {
        UsageKey {
            workload,
            syscall,
            cap,
            ..Default::default()
        }
    }

    #[test]
    fn words_are_the_workload_then_the_rest() {
        let k = UsageKey {
            workload: 7,
            syscall: 170,
            cap: 21,
            verdict: 1,
            scope: 2,
            origin: 0,
            opts: 0x82,
            _pad: 0,
        };
        let [w, rest] = k.words();
        assert_eq!(w, 7);
        assert_eq!(rest & 0xffff, 170);
        assert_eq!((rest >> 16) & 0xff, 21);
        assert_eq!((rest >> 48) & 0xff, 0x82);
    }

    #[test]
    fn slots_stay_in_range_and_spread_the_keys_of_one_workload() {
        let mut used = [0u32; SLOTS as usize];
        for syscall in 0..40 {
            for cap in 0..41 {
                let s = key(1, syscall, cap).cache_slot();
                assert!(s < SLOTS);
                used[s as usize] += 1;
            }
        }
        // 1,640 keys over 256 slots: none may take a large share.
        assert!(used.iter().all(|&n| n < 20), "{used:?}");
        assert!(used.iter().filter(|&&n| n > 0).count() > 240);
    }

    #[test]
    fn free_and_half_claimed_slots_hold_nothing() {
        assert_eq!(held(&CountSlot::default()), None);
        let k = key(3, 170, 21);
        assert_eq!(held(&CountSlot { key: k, count: 0 }), None);
        let half = CountSlot {
            key: key(0, 170, 21),
            count: 1,
        };
        assert_eq!(held(&half), None);
        assert_eq!(held(&CountSlot { key: k, count: 5 }), Some((k, 5)));
    }
}
