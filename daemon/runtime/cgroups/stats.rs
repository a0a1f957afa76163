//! A container's usage as the kernel counts it in its cgroup files, on v1 hierarchies and on
//! the v2 tree: the parsers of those files (pure) and the reads. A file that is not there
//! gives an absent figure, never 0: its controller, or the kernel feature behind it, is
//! missing, and a 0 would read as a measurement.
use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use super::{
    v2_resources::{key_values, ParseError},
    CgroupError, Result,
};

/// Every figure berth reads, by controller; a section is absent when its controller is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub cpu: Option<Cpu>,
    pub memory: Option<Memory>,
    pub pids: Option<Pids>,
    pub io: Option<Io>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    pub usage_total_ns: Option<u64>,
    pub usage_user_ns: Option<u64>,
    pub usage_system_ns: Option<u64>,
    pub periods: Option<u64>,
    pub throttled_periods: Option<u64>,
    pub throttled_time_ns: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage_bytes: Option<u64>,
    /// Absent when unlimited.
    pub limit_bytes: Option<u64>,
    pub cache_bytes: Option<u64>,
    pub inactive_file_bytes: Option<u64>,
    pub rss_bytes: Option<u64>,
    pub max_usage_bytes: Option<u64>,
    pub swap_usage_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pids {
    pub current: Option<u64>,
    /// Absent when unlimited.
    pub limit: Option<u64>,
}

/// Summed over every device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Io {
    pub read_bytes: Option<u64>,
    pub write_bytes: Option<u64>,
    pub read_ops: Option<u64>,
    pub write_ops: Option<u64>,
}

// ---------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------

/// A flat-keyed file: `KEY VALUE` lines (cpu.stat, memory.stat, memory.events,
/// memory.oom_control).
pub fn flat(file: &'static str, text: &str) -> Result<BTreeMap<String, u64>, ParseError> {
    key_values(file, text)
        .map(|entry| entry.map(|(key, value)| (key.to_owned(), value)))
        .collect()
}

/// A file of one number, where `max` (v2's "no limit") is `None`.
pub fn single(file: &'static str, text: &str) -> Result<Option<u64>, ParseError> {
    let value = text.trim();
    if value == "max" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| ParseError {
        file,
        line: value.to_owned(),
        reason: "not an unsigned integer or \"max\"",
    })
}

/// v1 reads "no limit" as the largest multiple of the page size an i64 holds
/// (9223372036854771712 with 4 KiB pages); anything within the largest page size of
/// i64::MAX is that.
pub fn v1_limit(bytes: u64) -> Option<u64> {
    const LARGEST_PAGE: u64 = 64 * 1024;
    ((i64::MAX as u64).saturating_sub(bytes) >= LARGEST_PAGE).then_some(bytes)
}

/// v2's io.stat: one line per device, `MAJ:MIN rbytes=N wbytes=N rios=N wios=N ...`; keys
/// other than those four (discards, iocost's) are left out.
pub fn io_stat(file: &'static str, text: &str) -> Result<Io, ParseError> {
    let mut sums = [0u64; 4];
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let error = |reason| ParseError {
            file,
            line: line.to_owned(),
            reason,
        };
        let mut fields = line.split_whitespace();
        fields
            .next()
            .filter(|device| device.contains(':'))
            .ok_or_else(|| error("expected \"MAJ:MIN KEY=VALUE...\""))?;
        for field in fields {
            let (key, value) = field
                .split_once('=')
                .ok_or_else(|| error("expected KEY=VALUE"))?;
            let slot = match key {
                "rbytes" => 0,
                "wbytes" => 1,
                "rios" => 2,
                "wios" => 3,
                _ => continue,
            };
            let value: u64 = value
                .parse()
                .map_err(|_| error("value is not an unsigned integer"))?;
            sums[slot] = sums[slot].saturating_add(value);
        }
    }
    let [read_bytes, write_bytes, read_ops, write_ops] = sums.map(Some);
    Ok(Io {
        read_bytes,
        write_bytes,
        read_ops,
        write_ops,
    })
}

/// v1's blkio.throttle.io_service_bytes_recursive and io_serviced_recursive: `MAJ:MIN OP N`
/// lines (OP Read, Write, Sync, Async, Discard, Total) and a closing `Total N`. Returns the
/// Read and Write sums over the devices.
pub fn blkio(file: &'static str, text: &str) -> Result<(u64, u64), ParseError> {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let error = |reason| ParseError {
            file,
            line: line.to_owned(),
            reason,
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (op, value) = match fields[..] {
            [device, op, value] if device.contains(':') => (op, value),
            ["Total", _] => continue,
            _ => return Err(error("expected \"MAJ:MIN OP VALUE\" or \"Total VALUE\"")),
        };
        let value: u64 = value
            .parse()
            .map_err(|_| error("value is not an unsigned integer"))?;
        match op {
            "Read" => read = read.saturating_add(value),
            "Write" => write = write.saturating_add(value),
            _ => {}
        }
    }
    Ok((read, write))
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

/// `file` of `dir` through `parse`; `None` when it does not exist.
fn parsed<T>(
    dir: &Path,
    file: &'static str,
    parse: impl FnOnce(&'static str, &str) -> Result<T, ParseError>,
) -> Result<Option<T>> {
    let path = dir.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CgroupError::Io {
                action: "read",
                path,
                source,
            })
        }
    };
    parse(file, &text)
        .map(Some)
        .map_err(|source| CgroupError::Unparsable { path, source })
}

/// A number of one file, absent when the file is or when it reads `max`.
fn number(dir: &Path, file: &'static str) -> Result<Option<u64>> {
    Ok(parsed(dir, file, single)?.flatten())
}

fn micros_to_nanos(micros: Option<&u64>) -> Option<u64> {
    micros.map(|us| us.saturating_mul(1000))
}

/// The cgroup v2 directory of a container.
pub fn v2(dir: &Path) -> Result<Stats> {
    // cpu.stat is a core file: usage is counted without the cpu controller, throttling
    // only with it.
    let cpu = parsed(dir, "cpu.stat", flat)?.map(|stat| Cpu {
        usage_total_ns: micros_to_nanos(stat.get("usage_usec")),
        usage_user_ns: micros_to_nanos(stat.get("user_usec")),
        usage_system_ns: micros_to_nanos(stat.get("system_usec")),
        periods: stat.get("nr_periods").copied(),
        throttled_periods: stat.get("nr_throttled").copied(),
        throttled_time_ns: micros_to_nanos(stat.get("throttled_usec")),
    });
    let memory = match number(dir, "memory.current")? {
        None => None,
        usage_bytes => {
            let stat = parsed(dir, "memory.stat", flat)?.unwrap_or_default();
            let events = parsed(dir, "memory.events", flat)?.unwrap_or_default();
            Some(Memory {
                usage_bytes,
                limit_bytes: number(dir, "memory.max")?,
                cache_bytes: stat.get("file").copied(),
                inactive_file_bytes: stat.get("inactive_file").copied(),
                rss_bytes: stat.get("anon").copied(),
                // Linux 5.19 and later.
                max_usage_bytes: number(dir, "memory.peak")?,
                swap_usage_bytes: number(dir, "memory.swap.current")?,
                oom_kills: events.get("oom_kill").copied(),
            })
        }
    };
    let pids = match number(dir, "pids.current")? {
        None => None,
        current => Some(Pids {
            current,
            limit: number(dir, "pids.max")?,
        }),
    };
    Ok(Stats {
        cpu,
        memory,
        pids,
        io: parsed(dir, "io.stat", io_stat)?,
    })
}

/// A container's directories in the v1 hierarchies of the controllers stats reads (the
/// same directory twice where one hierarchy holds both cpu and cpuacct).
#[derive(Debug, Default)]
pub struct V1Dirs {
    pub cpu: Option<PathBuf>,
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
    pub pids: Option<PathBuf>,
    pub blkio: Option<PathBuf>,
}

pub fn v1(dirs: &V1Dirs) -> Result<Stats> {
    let cpu = match (&dirs.cpuacct, &dirs.cpu) {
        (None, None) => None,
        (cpuacct, cpu) => {
            let usage = |file: &'static str| match cpuacct {
                Some(dir) => number(dir, file),
                None => Ok(None),
            };
            let throttling = match cpu {
                Some(dir) => parsed(dir, "cpu.stat", flat)?.unwrap_or_default(),
                None => BTreeMap::new(),
            };
            Some(Cpu {
                usage_total_ns: usage("cpuacct.usage")?,
                usage_user_ns: usage("cpuacct.usage_user")?,
                usage_system_ns: usage("cpuacct.usage_sys")?,
                periods: throttling.get("nr_periods").copied(),
                throttled_periods: throttling.get("nr_throttled").copied(),
                throttled_time_ns: throttling.get("throttled_time").copied(),
            })
        }
    };
    let memory = match &dirs.memory {
        Some(dir) => match number(dir, "memory.usage_in_bytes")? {
            None => None,
            usage_bytes => {
                // The total_ figures count the container's sub-cgroups too, as
                // usage_in_bytes and v2's memory.stat do.
                let stat = parsed(dir, "memory.stat", flat)?.unwrap_or_default();
                let oom = parsed(dir, "memory.oom_control", flat)?.unwrap_or_default();
                // memsw counts memory and swap: present only with swap accounting.
                let swap_usage_bytes = number(dir, "memory.memsw.usage_in_bytes")?
                    .zip(usage_bytes)
                    .map(|(both, memory)| both.saturating_sub(memory));
                Some(Memory {
                    usage_bytes,
                    limit_bytes: number(dir, "memory.limit_in_bytes")?.and_then(v1_limit),
                    cache_bytes: stat.get("total_cache").copied(),
                    inactive_file_bytes: stat.get("total_inactive_file").copied(),
                    rss_bytes: stat.get("total_rss").copied(),
                    max_usage_bytes: number(dir, "memory.max_usage_in_bytes")?,
                    swap_usage_bytes,
                    oom_kills: oom.get("oom_kill").copied(),
                })
            }
        },
        None => None,
    };
    let pids = match &dirs.pids {
        Some(dir) => match number(dir, "pids.current")? {
            None => None,
            current => Some(Pids {
                current,
                limit: number(dir, "pids.max")?,
            }),
        },
        None => None,
    };
    // The throttling layer sees every bio whatever the I/O scheduler (the proportional
    // ones, BFQ's blkio.bfq.*, only theirs).
    let io = match &dirs.blkio {
        Some(dir) => {
            let bytes = parsed(dir, "blkio.throttle.io_service_bytes_recursive", blkio)?;
            let ops = parsed(dir, "blkio.throttle.io_serviced_recursive", blkio)?;
            (bytes.is_some() || ops.is_some()).then(|| Io {
                read_bytes: bytes.map(|(read, _)| read),
                write_bytes: bytes.map(|(_, write)| write),
                read_ops: ops.map(|(read, _)| read),
                write_ops: ops.map(|(_, write)| write),
            })
        }
        None => None,
    };
    Ok(Stats {
        cpu,
        memory,
        pids,
        io,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_values_and_max() {
        assert_eq!(single("pids.max", "32\n"), Ok(Some(32)));
        assert_eq!(single("memory.max", "max\n"), Ok(None));
        let error = single("pids.current", "many\n").unwrap_err();
        assert_eq!(error.file, "pids.current");
        assert_eq!(error.line, "many");
    }

    #[test]
    fn v1_reads_no_limit_as_the_largest_page_aligned_i64() {
        assert_eq!(v1_limit(9_223_372_036_854_771_712), None);
        // 64 KiB pages (arm64, ppc64).
        assert_eq!(v1_limit(9_223_372_036_854_710_272), None);
        assert_eq!(v1_limit(67_108_864), Some(67_108_864));
        assert_eq!(v1_limit(u64::MAX), None);
    }

    #[test]
    fn flat_keyed_files_take_every_key_and_refuse_other_lines() {
        let stat = flat(
            "cpu.stat",
            "usage_usec 1520\nuser_usec 1000\nsystem_usec 520\nnr_periods 4\n",
        )
        .unwrap();
        assert_eq!(stat.get("system_usec"), Some(&520));
        assert_eq!(stat.len(), 4);
        assert!(flat("memory.stat", "anon 10\nfile\n").is_err());
        assert!(flat("memory.stat", "anon -1\n").is_err());
    }

    #[test]
    fn io_stat_sums_the_devices_and_skips_other_keys() {
        let text = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                    259:0 rbytes=100 wbytes=0 rios=3 wios=0 dbytes=0 dios=0 cost.vrate=100.00\n";
        assert_eq!(
            io_stat("io.stat", text).unwrap(),
            Io {
                read_bytes: Some(4196),
                write_bytes: Some(8192),
                read_ops: Some(4),
                write_ops: Some(2),
            }
        );
        // A cgroup that did no I/O has an empty io.stat: every sum is a real 0.
        assert_eq!(io_stat("io.stat", "").unwrap().read_bytes, Some(0));
        assert!(io_stat("io.stat", "rbytes=1\n").is_err());
        assert!(io_stat("io.stat", "8:0 rbytes\n").is_err());
    }

    #[test]
    fn blkio_sums_reads_and_writes_over_devices() {
        let text = "8:0 Read 4096\n8:0 Write 512\n8:0 Sync 4608\n8:0 Async 0\n\
                    8:0 Discard 0\n8:0 Total 4608\n8:16 Read 1\n8:16 Write 2\nTotal 4611\n";
        assert_eq!(blkio("blkio", text).unwrap(), (4097, 514));
        assert_eq!(blkio("blkio", "Total 0\n").unwrap(), (0, 0));
        assert!(blkio("blkio", "8:0 Read\n").is_err());
    }

    fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        dir
    }

    #[test]
    fn a_v2_cgroup_without_controllers_has_cpu_usage_alone() {
        let dir = dir_with(&[(
            "cpu.stat",
            "usage_usec 7\nuser_usec 5\nsystem_usec 2\nnice_usec 0\n",
        )]);
        let stats = v2(dir.path()).unwrap();
        assert_eq!(
            stats.cpu,
            Some(Cpu {
                usage_total_ns: Some(7000),
                usage_user_ns: Some(5000),
                usage_system_ns: Some(2000),
                ..Cpu::default()
            })
        );
        assert_eq!((stats.memory, stats.pids, stats.io), (None, None, None));
    }

    #[test]
    fn v2_files_map_to_the_figures() {
        let dir = dir_with(&[
            (
                "cpu.stat",
                "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 9\nnr_throttled 3\nthrottled_usec 250\n",
            ),
            ("memory.current", "1048576\n"),
            ("memory.max", "max\n"),
            ("memory.stat", "anon 4096\nfile 8192\ninactive_file 2048\n"),
            ("memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n"),
            ("memory.swap.current", "0\n"),
            ("pids.current", "3\n"),
            ("pids.max", "32\n"),
            ("io.stat", "8:0 rbytes=1 wbytes=2 rios=3 wios=4\n"),
        ]);
        let stats = v2(dir.path()).unwrap();
        let cpu = stats.cpu.unwrap();
        assert_eq!((cpu.periods, cpu.throttled_periods), (Some(9), Some(3)));
        assert_eq!(cpu.throttled_time_ns, Some(250_000));
        assert_eq!(
            stats.memory,
            Some(Memory {
                usage_bytes: Some(1_048_576),
                limit_bytes: None,
                cache_bytes: Some(8192),
                inactive_file_bytes: Some(2048),
                rss_bytes: Some(4096),
                // No memory.peak: a kernel before 5.19.
                max_usage_bytes: None,
                swap_usage_bytes: Some(0),
                oom_kills: Some(1),
            })
        );
        assert_eq!(
            stats.pids,
            Some(Pids {
                current: Some(3),
                limit: Some(32)
            })
        );
        assert_eq!(stats.io.unwrap().write_ops, Some(4));
    }

    #[test]
    fn v1_files_map_to_the_figures() {
        let cpuacct = dir_with(&[
            ("cpuacct.usage", "123456\n"),
            ("cpuacct.usage_user", "100000\n"),
            ("cpuacct.usage_sys", "23456\n"),
        ]);
        let cpu = dir_with(&[(
            "cpu.stat",
            "nr_periods 5\nnr_throttled 1\nthrottled_time 777\nnr_bursts 0\nburst_time 0\n",
        )]);
        let memory = dir_with(&[
            ("memory.usage_in_bytes", "2097152\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.max_usage_in_bytes", "3145728\n"),
            ("memory.memsw.usage_in_bytes", "2101248\n"),
            (
                "memory.stat",
                "cache 0\nrss 0\ntotal_cache 4096\ntotal_rss 1048576\ntotal_inactive_file 1024\n",
            ),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
            ),
        ]);
        let blkio_dir = dir_with(&[(
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 10\n8:0 Write 20\nTotal 30\n",
        )]);
        let stats = v1(&V1Dirs {
            cpu: Some(cpu.path().into()),
            cpuacct: Some(cpuacct.path().into()),
            memory: Some(memory.path().into()),
            pids: None,
            blkio: Some(blkio_dir.path().into()),
        })
        .unwrap();
        assert_eq!(
            stats.cpu,
            Some(Cpu {
                usage_total_ns: Some(123_456),
                usage_user_ns: Some(100_000),
                usage_system_ns: Some(23_456),
                periods: Some(5),
                throttled_periods: Some(1),
                throttled_time_ns: Some(777),
            })
        );
        assert_eq!(
            stats.memory,
            Some(Memory {
                usage_bytes: Some(2_097_152),
                limit_bytes: None,
                cache_bytes: Some(4096),
                inactive_file_bytes: Some(1024),
                rss_bytes: Some(1_048_576),
                max_usage_bytes: Some(3_145_728),
                swap_usage_bytes: Some(4096),
                oom_kills: Some(2),
            })
        );
        assert_eq!(stats.pids, None);
        assert_eq!(
            stats.io,
            Some(Io {
                read_bytes: Some(10),
                write_bytes: Some(20),
                read_ops: None,
                write_ops: None,
            })
        );
    }

    #[test]
    fn a_garbled_file_is_an_error_naming_it_not_a_zero() {
        let dir = dir_with(&[("pids.current", "lots\n")]);
        let error = v2(dir.path()).unwrap_err().to_string();
        assert!(error.contains("pids.current"), "{error}");
    }
}
