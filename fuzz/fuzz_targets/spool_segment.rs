//! A spool folder as a crash or a damaged disk leaves it (any bytes in the active and a
//! sealed segment; the input is `active NUL sealed`): the collector opens it and every
//! segment left is readable, or it refuses naming the file; the read-only view a backfill
//! takes never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prescale_collector::spool::{Owned, Spool, read_segment, sealed_segments};
use prescale_core::StepGrid;

struct Input<'a> {
    active: &'a [u8],
    sealed: &'a [u8],
}

fuzz_target!(|data: &[u8]| {
    let input = match data.iter().position(|b| *b == 0) {
        Some(at) => Input { active: &data[..at], sealed: &data[at + 1..] },
        None => Input { active: data, sealed: &[] },
    };
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::write(spool.join("active.jsonl"), input.active).unwrap();
    std::fs::write(spool.join("sealed-00000001.jsonl"), input.sealed).unwrap();
    let _ = Owned::read(&spool);
    match Spool::open(&spool, StepGrid::default()) {
        Ok((mut opened, _recovery)) => {
            for path in sealed_segments(&spool).unwrap() {
                read_segment(&path).unwrap_or_else(|e| panic!("{} unreadable after open: {e}", path.display()));
            }
            // The active file is sound after open too: sealing it gives a readable segment.
            if let Some(path) = opened.seal().unwrap() {
                read_segment(&path).unwrap_or_else(|e| panic!("sealed active unreadable: {e}"));
            }
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
