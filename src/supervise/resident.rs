//! Giving back the pages of fpmctl's own binary that only start-up and past events touched.
//!
//! fpmctl is one binary for every command, so starting the supervisor (config parsing,
//! discovery, the CLI) maps far more of its code and read-only data than waiting does. Those
//! pages are clean copies of the file: the kernel keeps them in the page cache and may drop
//! them from the process at any time under memory pressure, faulting them back in (a minor
//! fault, no disk read while the page cache holds them) when they are used again. When the
//! supervisor settles, [`release`] does the same at once with `madvise(MADV_DONTNEED)`, so its
//! resident size is what waiting really uses (`FPMCTL_RELEASE_PAGES=0` keeps the pages). What
//! waiting uses is small only because the release build links it into one place
//! (`build/idle-layout.ld`): the kernel maps 64 KiB around each page a fault touches. The cost
//! is on the next crash, which maps again the code it runs (benches/crash.rs). [`trim_heap`]
//! does the same for the heap: glibc keeps what start-up allocated and freed until it is asked
//! to give it back.
//!
//! Only mappings of the fpmctl executable itself are released (the mapping holding this
//! module's code names the file), only read-only private ones (`r--p`, `r-xp`), and only
//! while `/proc/self/smaps` shows no private copy in them (`Anonymous` and `Swap` both 0):
//! `MADV_DONTNEED` on a private mapping discards such copies, which would revert a page
//! written through a debugger or by relocation (the RELRO segment after the dynamic loader
//! relocated it is anonymous memory, so it is never chosen). A page of the file that is
//! dirty in the page cache (`Private_Dirty` without `Anonymous`: the binary was written
//! moments ago) is no copy: it is released like the others and stays in the page cache.
//! Writable mappings, the heap, stacks and shared libraries are never advised. The page
//! cache is not changed: releasing frees no memory the kernel could not reclaim anyway, it
//! only stops counting pages waiting does not use as the supervisor's (and, unmapped, they
//! are the first the kernel reclaims under pressure).

use nix::sys::mman::{MmapAdvise, madvise};
use std::ffi::c_void;
use std::ptr::NonNull;

/// One mapping of `/proc/self/smaps`: what [`droppable`] decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: usize,
    /// Address past the last byte.
    pub end: usize,
    /// `rwxp`-style permissions, as smaps shows them.
    pub perms: String,
    /// Device (`major:minor`, hex) and inode of the mapped file; inode 0 for anonymous memory.
    pub dev: String,
    /// Inode of the mapped file.
    pub inode: u64,
    /// Resident KiB.
    pub rss_kib: u64,
    /// Anonymous (private copy) KiB.
    pub anonymous_kib: u64,
    /// Swapped-out KiB (a private copy that left memory is still a private copy).
    pub swap_kib: u64,
}

/// Parses `/proc/PID/smaps` text; lines it does not know are skipped.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        if let Some(m) = parse_header(line) {
            out.push(m);
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let kib = || value.split_whitespace().next()?.parse::<u64>().ok();
        match key {
            // An unparsable count: nothing to release (Rss), or "has private pages", so
            // never released (Anonymous, Swap).
            "Rss" => cur.rss_kib = kib().unwrap_or(0),
            "Anonymous" => cur.anonymous_kib = kib().unwrap_or(u64::MAX),
            "Swap" => cur.swap_kib = kib().unwrap_or(u64::MAX),
            _ => {}
        }
    }
    out
}

/// `start-end perms offset dev inode [path]`; `None` for any other line.
fn parse_header(line: &str) -> Option<Mapping> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = f.next()?;
    let _offset = u64::from_str_radix(f.next()?, 16).ok()?;
    let dev = f.next()?;
    let inode = f.next()?.parse::<u64>().ok()?;
    if perms.len() != 4 || !dev.contains(':') || end <= start {
        return None;
    }
    Some(Mapping {
        start,
        end,
        perms: perms.to_string(),
        dev: dev.to_string(),
        inode,
        // Unknown until the mapping's own lines say otherwise: never released.
        rss_kib: 0,
        anonymous_kib: u64::MAX,
        swap_kib: u64::MAX,
    })
}

/// The mappings of `maps` that may be released: those of the file mapped at `own` (an
/// address in the executable's code), read-only and private, resident, with no private copy.
pub fn droppable(maps: &[Mapping], own: usize) -> Vec<&Mapping> {
    let Some(exe) = maps.iter().find(|m| m.start <= own && own < m.end) else {
        return Vec::new();
    };
    if exe.inode == 0 {
        return Vec::new();
    }
    maps.iter()
        .filter(|m| m.dev == exe.dev && m.inode == exe.inode)
        .filter(|m| matches!(m.perms.as_str(), "r--p" | "r-xp"))
        .filter(|m| m.rss_kib > 0)
        .filter(|m| m.anonymous_kib == 0 && m.swap_kib == 0)
        .collect()
}

/// What one [`release`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings released.
    pub mappings: usize,
    /// Resident KiB they held before.
    pub kib: u64,
}

/// Releases the droppable mappings of the executable (see the module docs). Best effort: a
/// mapping that cannot be read or advised is kept as it is.
pub fn release() -> Released {
    let Ok(text) = std::fs::read_to_string("/proc/self/smaps") else {
        return Released::default();
    };
    let maps = parse_smaps(&text);
    let own = release as *const () as usize;
    let mut done = Released::default();
    for m in droppable(&maps, own) {
        let Some(addr) = NonNull::new(m.start as *mut c_void) else {
            continue;
        };
        // SAFETY: the range is exactly one whole mapping of our own executable that
        // /proc/self/smaps just showed read-only, private and without any private copy
        // (Anonymous and Swap 0). Nothing in fpmctl writes to or remaps its own
        // image after start, so its content equals the file's: MADV_DONTNEED only drops
        // the page table entries, and every later access faults the same bytes back in from
        // the page cache (or the file), as after the kernel's own reclaim. No reference
        // into the range is invalidated: its memory stays mapped and readable throughout.
        if unsafe { madvise(addr, m.end - m.start, MmapAdvise::MADV_DONTNEED) }.is_ok() {
            done.mappings += 1;
            done.kib = done.kib.saturating_add(m.rss_kib);
        }
    }
    done
}

/// Returns the free pages of every malloc arena to the kernel (glibc keeps them for reuse
/// otherwise: what start-up parsed and scanned, once freed, stays resident).
pub fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes the allocator's own locks and only releases memory that is
    // free; it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Abridged smaps of a supervisor: its executable (inode 77) as four mappings, the heap,
    /// libc, and an anonymous mapping.
    const SMAPS: &str = "\
55d0a0000000-55d0a01ac000 r--p 00000000 fe:00 77                         /usr/bin/fpmctl
Size:               1712 kB
Rss:                1024 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd mr mw me sd
55d0a01ac000-55d0a05e8000 r-xp 001ac000 fe:00 77                         /usr/bin/fpmctl
Size:               4336 kB
Rss:                3632 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
55d0a05e8000-55d0a063c000 r--p 005e7000 fe:00 77                         /usr/bin/fpmctl
Size:                336 kB
Rss:                 336 kB
Private_Dirty:       336 kB
Anonymous:           336 kB
Swap:                  0 kB
55d0a063c000-55d0a063f000 rw-p 0063a000 fe:00 77                         /usr/bin/fpmctl
Size:                 12 kB
Rss:                  12 kB
Private_Dirty:        12 kB
Anonymous:            12 kB
Swap:                  0 kB
55d0a1000000-55d0a1063000 rw-p 00000000 00:00 0                          [heap]
Rss:                 308 kB
Anonymous:           308 kB
7f0000187000-7f00002dd000 r-xp 00026000 fe:00 326279                     /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1008 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
7f0000400000-7f0000421000 rw-p 00000000 00:00 0 
Rss:                   4 kB
Anonymous:             4 kB
";

    const IN_TEXT: usize = 0x55d0a0200000;

    fn starts(v: &[&Mapping]) -> Vec<usize> {
        v.iter().map(|m| m.start).collect()
    }

    #[test]
    fn parses_every_mapping_with_its_counts() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 7);
        assert_eq!(maps[1].perms, "r-xp");
        assert_eq!(maps[1].dev, "fe:00");
        assert_eq!(maps[1].inode, 77);
        assert_eq!(maps[1].rss_kib, 3632);
        assert_eq!(maps[2].anonymous_kib, 336);
        assert_eq!(maps[6].inode, 0);
    }

    #[test]
    fn only_the_executables_clean_read_only_mappings_are_released() {
        let maps = parse_smaps(SMAPS);
        // Not the relocated RELRO part (anonymous), not .data (writable), not libc.
        assert_eq!(
            starts(&droppable(&maps, IN_TEXT)),
            vec![0x55d0a0000000, 0x55d0a01ac000]
        );
    }

    #[test]
    fn a_private_copy_in_a_read_only_mapping_keeps_it() {
        // A debugger's breakpoint makes an anonymous copy of a text page.
        let text = SMAPS.replacen(
            "Rss:                3632 kB\nPrivate_Dirty:         0 kB\nAnonymous:             0 kB",
            "Rss:                3632 kB\nPrivate_Dirty:         4 kB\nAnonymous:             4 kB",
            1,
        );
        assert_eq!(
            starts(&droppable(&parse_smaps(&text), IN_TEXT)),
            vec![0x55d0a0000000]
        );
    }

    #[test]
    fn dirty_page_cache_pages_without_a_private_copy_are_released() {
        // A binary written moments ago: its pages are dirty in the page cache, not copies.
        let text = SMAPS.replacen(
            "Rss:                3632 kB\nPrivate_Dirty:         0 kB",
            "Rss:                3632 kB\nPrivate_Dirty:      3632 kB",
            1,
        );
        assert_eq!(
            starts(&droppable(&parse_smaps(&text), IN_TEXT)),
            vec![0x55d0a0000000, 0x55d0a01ac000]
        );
    }

    #[test]
    fn a_swapped_private_copy_keeps_the_mapping() {
        let text = SMAPS.replacen(
            "Anonymous:             0 kB\nSwap:                  0 kB",
            "Anonymous:             0 kB\nSwap:                  8 kB",
            1,
        );
        assert_eq!(
            starts(&droppable(&parse_smaps(&text), IN_TEXT)),
            vec![0x55d0a01ac000]
        );
    }

    #[test]
    fn counts_that_are_missing_or_unreadable_keep_the_mapping() {
        let text = SMAPS
            .replacen("Anonymous:             0 kB\n", "", 1)
            .replacen(
                "Swap:                  0 kB",
                "Swap:                  x kB",
                2,
            );
        assert!(droppable(&parse_smaps(&text), IN_TEXT).is_empty());
    }

    #[test]
    fn an_address_outside_any_file_mapping_releases_nothing() {
        let maps = parse_smaps(SMAPS);
        assert!(droppable(&maps, 0x1000).is_empty());
        // An anonymous mapping names no file.
        assert!(droppable(&maps, 0x7f0000400010).is_empty());
    }

    #[test]
    fn garbage_lines_are_skipped() {
        let maps = parse_smaps("nonsense\nRss: 5 kB\nzz-yy r--p 0 fe:00 1 /x\n");
        assert!(maps.is_empty());
    }

    #[test]
    fn releasing_our_own_pages_keeps_the_code_working() {
        let first = release();
        // Code, constants and formatting all fault back in.
        let s = format!("{:?}", parse_smaps(SMAPS).len());
        assert_eq!(s, "7");
        // The test binary's code and constants are read-only mappings of its file.
        assert!(first.mappings >= 1, "{first:?}");
        release();
    }
}
