//! The files a run accesses, drawn from the seed: data files with the size
//! mix, executables, and an infected fraction of each.
//!
//! Every file has distinct content, so no cache keyed by content (the
//! cluster's shared verdicts, keyed by sha256) can answer for a file it has
//! not seen:
//! - clean data files: [`fill_content`] of their index;
//! - clean executables: a copy of `true(1)` with the index appended (bytes
//!   past an ELF's segments are never loaded);
//! - infected files (data or executable): the EICAR string followed by
//!   whitespace that encodes the index (the EICAR rule allows up to 128
//!   bytes of it, see `rules/eicar.yar`); executed, an allowed one fails
//!   with ENOEXEC, a denied one with EPERM.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::content::{fill_content, infected_set, SizeMix, SplitMix64, EICAR};
use crate::error::{IoContext, Result};

/// What to create.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub files: usize,
    pub sizes: SizeMix,
    pub infected_fraction: f64,
    pub exec_fraction: f64,
    pub seed: u64,
    /// Extra clean 4 KiB files after the set, for an untimed warm-up pass
    /// (never part of a measured phase).
    pub warmup: usize,
}

/// One file of the set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Index in the set (the content's tag).
    pub index: u64,
    /// File name, relative to the set's directory.
    pub name: String,
    pub size: u64,
    /// Executed rather than read.
    pub exec: bool,
    pub infected: bool,
}

/// Where `true(1)` lives.
fn true_binary() -> Option<PathBuf> {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// EICAR followed by the base-5 digits of `n` written as whitespace: a
/// distinct infected file for every `n`, at most 68 + 28 bytes.
pub fn eicar_variant(n: u64) -> Vec<u8> {
    const WS: [u8; 5] = [b' ', b'\t', b'\n', b'\r', 0x1A];
    let mut out = EICAR.to_vec();
    let mut n = n;
    while n > 0 {
        out.push(WS[(n % 5) as usize]);
        n /= 5;
    }
    out
}

impl FileSpec {
    /// The entries (no I/O). Executables come first, then data files (the
    /// infected ones spread by the seed), then the warm-up files: indices
    /// `files..files + warmup`.
    pub fn plan(&self, true_size: u64) -> Vec<FileEntry> {
        let mut rng = SplitMix64::derive(self.seed, 0xF11E);
        let mut n_exec = (self.files as f64 * self.exec_fraction.clamp(0.0, 1.0)).round() as usize;
        if self.exec_fraction > 0.0 && self.files > 0 {
            n_exec = n_exec.max(1);
        }
        let n_exec = n_exec.min(self.files);
        let n_data = self.files - n_exec;
        let exec_infected = infected_set(n_exec, self.infected_fraction, &mut rng);
        let data_infected = infected_set(n_data, self.infected_fraction, &mut rng);
        let mut out = Vec::with_capacity(self.files);
        let kinds = exec_infected
            .into_iter()
            .map(|inf| (true, inf))
            .chain(data_infected.into_iter().map(|inf| (false, inf)));
        for (i, (exec, infected)) in kinds.enumerate() {
            let index = i as u64;
            // Drawn for every data file, infected or not, so that the
            // sizes do not depend on which ones are infected.
            let size = if exec {
                true_size + 8
            } else {
                self.sizes.pick(&mut rng)
            };
            out.push(FileEntry {
                index,
                name: if exec {
                    format!("x{index:07}")
                } else {
                    format!("f{index:07}.bin")
                },
                size: if infected {
                    eicar_variant(index).len() as u64
                } else {
                    size
                },
                exec,
                infected,
            });
        }
        for i in 0..self.warmup {
            let index = (self.files + i) as u64;
            out.push(FileEntry {
                index,
                name: format!("w{index:07}.bin"),
                size: 4096,
                exec: false,
                infected: false,
            });
        }
        out
    }

    /// Bytes the set needs on a tmpfs (content rounded up to pages, plus
    /// room for inodes).
    pub fn bytes_needed(entries: &[FileEntry]) -> u64 {
        entries
            .iter()
            .map(|e| e.size.div_ceil(4096) * 4096 + 4096)
            .sum()
    }

    /// Creates the files of `entries` in `dir`.
    pub fn write(&self, dir: &Path, entries: &[FileEntry]) -> Result<()> {
        let true_bytes = if entries.iter().any(|e| e.exec && !e.infected) {
            let p = true_binary().ok_or_else(|| crate::error::Error::Io {
                context: "finding true(1) to copy as the clean executable".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })?;
            std::fs::read(&p).ctx(|| format!("reading {}", p.display()))?
        } else {
            vec![]
        };
        let mut buf = vec![];
        for e in entries {
            buf.clear();
            if e.infected {
                buf.extend_from_slice(&eicar_variant(e.index));
            } else if e.exec {
                buf.extend_from_slice(&true_bytes);
                buf.extend_from_slice(&e.index.to_le_bytes());
            } else {
                buf.resize(usize::try_from(e.size).unwrap_or(0), 0);
                fill_content(&mut buf, self.seed, e.index);
            }
            let path = dir.join(&e.name);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(if e.exec { 0o755 } else { 0o644 })
                .open(&path)
                .ctx(|| format!("creating {}", path.display()))?;
            f.write_all(&buf)
                .ctx(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// The size of `true(1)` (0 when it is missing).
    pub fn true_size() -> u64 {
        true_binary()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len())
    }
}

/// Which file each operation of a worker accesses.
#[derive(Debug, Clone)]
pub enum Picker<'a> {
    /// Cold: the worker's list, once, in order.
    Cold(&'a [u32]),
    /// Warm: at random from `pool` (from all `files` when it is empty).
    Warm {
        pool: &'a [u32],
        files: usize,
        rng: SplitMix64,
    },
}

impl Picker<'_> {
    /// The file of operation `i`; `None` when a cold list is done.
    pub fn pick(&mut self, i: u64) -> Option<usize> {
        match self {
            Self::Cold(list) => list.get(usize::try_from(i).ok()?).map(|&x| x as usize),
            Self::Warm { files: 0, .. } => None,
            Self::Warm {
                pool: [],
                files,
                rng,
            } => Some(rng.below(*files as u64) as usize),
            Self::Warm { pool, rng, .. } => {
                let k = rng.below(pool.len() as u64) as usize;
                pool.get(k).map(|&x| x as usize)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(files: usize) -> FileSpec {
        FileSpec {
            files,
            sizes: "1k:1,8k:1".parse().unwrap(),
            infected_fraction: 0.1,
            exec_fraction: 0.2,
            seed: 9,
            warmup: 3,
        }
    }

    #[test]
    fn pickers_go_through_a_list_or_draw_from_a_pool() {
        let list = [3, 1, 2];
        let mut cold = Picker::Cold(&list);
        let picked: Vec<_> = (0..4).map(|i| cold.pick(i)).collect();
        assert_eq!(picked, [Some(3), Some(1), Some(2), None]);
        let pool = [7, 9];
        let mut warm = Picker::Warm {
            pool: &pool,
            files: 100,
            rng: SplitMix64::new(1),
        };
        assert!((0..50).all(|i| matches!(warm.pick(i), Some(7 | 9))));
        let mut all = Picker::Warm {
            pool: &[],
            files: 5,
            rng: SplitMix64::new(1),
        };
        assert!((0..50).all(|i| all.pick(i).is_some_and(|x| x < 5)));
        let mut none = Picker::Warm {
            pool: &[],
            files: 0,
            rng: SplitMix64::new(1),
        };
        assert_eq!(none.pick(0), None);
    }

    #[test]
    fn eicar_variants_are_distinct_and_within_the_rule() {
        let a = eicar_variant(0);
        assert_eq!(a, EICAR);
        let b = eicar_variant(1);
        let c = eicar_variant(u64::MAX);
        assert_ne!(a, b);
        assert!(c.len() <= 128, "{}", c.len());
        assert!(c[EICAR.len()..]
            .iter()
            .all(|b| [b' ', b'\t', b'\n', b'\r', 0x1A].contains(b)));
    }

    #[test]
    fn a_plan_is_deterministic_with_the_fractions() {
        let p = spec(50).plan(1000);
        assert_eq!(p, spec(50).plan(1000));
        assert_eq!(p.len(), 53);
        assert!(p[50..]
            .iter()
            .all(|e| !e.exec && !e.infected && e.size == 4096));
        assert!(p.iter().enumerate().all(|(i, e)| e.index == i as u64));
        assert_eq!(p.iter().filter(|e| e.exec).count(), 10);
        assert_eq!(p.iter().filter(|e| e.exec && e.infected).count(), 1);
        assert_eq!(p.iter().filter(|e| !e.exec && e.infected).count(), 4);
        let mut other = spec(50);
        other.seed = 10;
        assert_ne!(p, other.plan(1000));
        assert!(FileSpec::bytes_needed(&p) >= p.iter().map(|e| e.size).sum::<u64>());
    }

    #[test]
    fn written_files_have_their_planned_size_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = spec(20);
        let plan = s.plan(FileSpec::true_size());
        s.write(dir.path(), &plan).unwrap();
        for e in &plan {
            let m = std::fs::metadata(dir.path().join(&e.name)).unwrap();
            assert_eq!(m.len(), e.size, "{e:?}");
            assert_eq!(m.permissions().mode() & 0o111 != 0, e.exec, "{e:?}");
            let bytes = std::fs::read(dir.path().join(&e.name)).unwrap();
            assert_eq!(bytes.starts_with(EICAR), e.infected, "{e:?}");
        }
        // Clean executables run.
        let x = plan.iter().find(|e| e.exec && !e.infected).unwrap();
        let st = std::process::Command::new(dir.path().join(&x.name))
            .status()
            .unwrap();
        assert!(st.success());
    }
}
