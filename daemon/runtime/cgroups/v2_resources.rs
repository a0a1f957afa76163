//! cgroup v2 ("unified hierarchy") resource translation.
//!
//! This module turns an OCI `linux.resources` object into the ordered list of
//! interface-file writes that runc 1.1's `fs2` cgroup driver performs on a pure
//! cgroup v2 host, plus a few helpers around that (controller checks,
//! `cgroup.subtree_control` lines, parsers for `cgroup.events`,
//! `memory.events` and `cgroup.controllers`).
//!
//! Everything here is a pure function: nothing reads or writes the cgroup
//! filesystem. Where runc's behaviour depends on the host (whether the BFQ
//! scheduler exposes `io.bfq.weight`, whether `hugetlb.*.rsvd.max` exists) the
//! caller probes the host and passes the answer in ([`HostInfo`]), or the write
//! is marked [`Write::optional`].
//!
//! Reference: runc v1.1.x, `libcontainer/cgroups/fs2/*.go`,
//! `libcontainer/cgroups/utils.go` (the `Convert*` helpers),
//! `libcontainer/cgroups/fscommon/rdma.go` and
//! `libcontainer/specconv/spec_linux.go` (OCI -> libcontainer config).
//!
//! Order of writes (runc's `fs2.manager.Set`): pids, memory, io, cpu,
//! (devices: an eBPF program, not a file write; out of scope here), cpuset,
//! hugetlb, rdma, (freezer: runtime state, not part of `linux.resources`),
//! and finally the `unified` map, so its entries win over anything written
//! earlier to the same file.
//!
//! Fields runc 1.1 accepts but never writes on cgroup v2 are reported by
//! [`ignored_fields`] so the caller can log them (runc itself only warns for
//! `memory.kernel`/`memory.kernelTCP`; the rest it drops silently).

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

/// Period runc puts into `cpu.max` when only a quota is given (the kernel's
/// documented default, in microseconds).
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// The CFS bandwidth the kernel takes (`tg_set_cfs_bandwidth`, v1 and v2 alike), in
/// microseconds: a period of 1 ms to 1 s, a quota of at least 1 ms.
pub const CPU_PERIOD_RANGE: std::ops::RangeInclusive<u64> = 1000..=1_000_000;
pub const CPU_QUOTA_MIN: i64 = 1000;

/// Valid range of `linux.resources.cpu.shares` under runc 1.1's linear
/// mapping: anything outside maps to a `cpu.weight` outside 1..=10000, which
/// the kernel rejects.
pub const CPU_SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_170;

/// Range of cgroup v1 blkio weights (and of the OCI `blockIO.weight` fields).
pub const BLKIO_WEIGHT_RANGE: std::ops::RangeInclusive<u16> = 10..=1000;

/// One write of `value` into the interface file `file` of the container's
/// cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// Controller that must be enabled for `file` to exist; `None` for core
    /// `cgroup.*` files, which every cgroup has.
    pub controller: Option<String>,
    /// Interface file name, relative to the cgroup directory (never contains
    /// `/`).
    pub file: String,
    /// Exact bytes to write.
    pub value: String,
    /// When true, the file may legitimately be absent on this kernel: a write
    /// failing with ENOENT must be skipped, not reported. runc uses this for
    /// `hugetlb.<size>.rsvd.max` (kernel 5.7+).
    pub optional: bool,
    /// The OCI field this write comes from (for error messages when the
    /// kernel rejects the value), e.g. `linux.resources.memory.limit`.
    pub origin: String,
}

impl Write {
    fn new(
        controller: &str,
        file: impl Into<String>,
        value: impl Into<String>,
        origin: impl Into<String>,
    ) -> Self {
        Write {
            controller: Some(controller.to_string()),
            file: file.into(),
            value: value.into(),
            optional: false,
            origin: origin.into(),
        }
    }
}

/// Where runc puts the block-I/O weight, which depends on the I/O scheduler
/// of the host. Probe with [`io_weight_backend`] (only needed when
/// [`needs_io_weight_probe`] says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoWeightBackend {
    /// No `io.bfq.weight` file: the weight is converted and written to
    /// `io.weight`; per-device weights are dropped.
    #[default]
    IoWeight,
    /// `io.bfq.weight` exists but only holds the group default (kernels
    /// before 5.4): the raw weight goes there; per-device weights are dropped.
    Bfq,
    /// `io.bfq.weight` accepts per-device entries (kernel 5.4+): the raw
    /// weight and every `MAJ:MIN WEIGHT` entry go there.
    BfqPerDevice,
}

/// Facts about the host that change what runc writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostInfo {
    pub io_weight: IoWeightBackend,
}

/// Validation failures of `linux.resources`; each names the OCI field at
/// fault. Callers report them as INVALID_ARGUMENT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("linux.resources.memory.limit ({0}) is invalid: use -1 for unlimited or a positive number of bytes")]
    MemoryLimit(i64),
    #[error("linux.resources.memory.reservation ({0}) is invalid: use -1 for unlimited or a positive number of bytes")]
    MemoryReservation(i64),
    #[error(
        "linux.resources.memory.swap ({swap}) needs linux.resources.memory.limit to be a positive \
         number of bytes (got {limit}); a swap limit cannot be set without a memory limit"
    )]
    SwapWithoutLimit { swap: i64, limit: i64 },
    #[error(
        "linux.resources.memory.swap ({swap}) is below linux.resources.memory.limit ({limit}); \
         swap is memory+swap and must be at least the limit, or -1 for unlimited"
    )]
    SwapBelowLimit { swap: i64, limit: i64 },
    #[error("linux.resources.cpu.shares ({0}) is outside 2..=262170 and cannot be mapped to cpu.weight (1..=10000)")]
    CpuShares(u64),
    #[error("linux.resources.cpu.quota ({0}) is below the kernel's minimum of 1000 microseconds; -1 is no quota")]
    CpuQuota(i64),
    #[error(
        "linux.resources.cpu.period ({0}) is outside the kernel's 1000..=1000000 microseconds"
    )]
    CpuPeriod(u64),
    #[error("linux.resources.blockIO.weight ({0}) is outside 10..=1000")]
    BlkioWeight(u16),
    #[error("{field} ({value}) is outside 10..=1000")]
    DeviceWeight { field: String, value: u16 },
    #[error("{field} ({value}) must not be negative")]
    DeviceNumber { field: String, value: i64 },
    #[error("linux.resources.hugepageLimits[{index}].pageSize ({page_size:?}) is not a page size name such as \"2MB\"")]
    HugepageSize { index: usize, page_size: String },
    #[error("linux.resources.hugepageLimits[{index}].limit ({limit}) must not be negative")]
    HugepageLimit { index: usize, limit: i64 },
    #[error("linux.resources.rdma key {0:?} is not a valid RDMA device name")]
    RdmaDevice(String),
    #[error("linux.resources.unified key {key:?} is invalid: {reason}")]
    UnifiedKey { key: String, reason: &'static str },
}

/// A cgroup file whose content could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {file}: {reason} in line {line:?}")]
pub struct ParseError {
    pub file: &'static str,
    pub line: String,
    pub reason: &'static str,
}

// ---------------------------------------------------------------------------
// Conversions (runc's libcontainer/cgroups/utils.go)
// ---------------------------------------------------------------------------

/// `cpu.shares` (v1, 2..=262144) to `cpu.weight` (v2, 1..=10000) with runc
/// 1.1's linear map `1 + (shares - 2) * 9999 / 262142` (integer division).
/// `Ok(None)` for 0, which runc treats as "unset". Shares that land outside
/// the kernel's range are refused: runc computes them with wrapping unsigned
/// arithmetic and the kernel then rejects the write.
///
/// Note: later runc releases switched to a logarithmic fit (1024 -> 100);
/// runc 1.1 gives 1024 -> 39.
pub fn cpu_shares_to_weight(shares: u64) -> Result<Option<u64>, Error> {
    if shares == 0 {
        return Ok(None);
    }
    if !CPU_SHARES_RANGE.contains(&shares) {
        return Err(Error::CpuShares(shares));
    }
    // Within the range the product fits easily in u64.
    Ok(Some(1 + (shares - 2) * 9999 / 262_142))
}

/// blkio weight (10..=1000) to `io.weight` (1..=10000), runc's
/// `1 + (weight - 10) * 9999 / 990`. `Ok(None)` for 0 ("unset").
pub fn blkio_weight_to_io_weight(weight: u16) -> Result<Option<u64>, Error> {
    if weight == 0 {
        return Ok(None);
    }
    if !BLKIO_WEIGHT_RANGE.contains(&weight) {
        return Err(Error::BlkioWeight(weight));
    }
    Ok(Some(1 + (u64::from(weight) - 10) * 9999 / 990))
}

/// The value for `memory.swap.max`, or `None` when runc writes nothing.
///
/// OCI's `swap` is the memory+swap total (a cgroup v1 notion); cgroup v2
/// limits swap alone, so runc subtracts the memory limit. Inputs use runc's
/// encoding: 0 = unset, -1 = unlimited.
///
/// * limit -1 and swap unset: swap becomes unlimited too ("max").
/// * swap -1: "max" (whatever the limit).
/// * swap unset: nothing is written.
/// * otherwise the limit must be positive and not above swap; the result is
///   `swap - limit`, and equal values write "0" (swap disabled).
pub fn swap_max_value(swap: i64, limit: i64) -> Result<Option<String>, Error> {
    if limit == -1 && swap == 0 {
        return Ok(Some("max".into()));
    }
    match swap {
        -1 => return Ok(Some("max".into())),
        0 => return Ok(None),
        _ => {}
    }
    if limit == 0 || limit == -1 {
        return Err(Error::SwapWithoutLimit { swap, limit });
    }
    if limit < 0 {
        return Err(Error::MemoryLimit(limit));
    }
    if swap < limit {
        return Err(Error::SwapBelowLimit { swap, limit });
    }
    Ok(Some((swap - limit).to_string()))
}

/// runc's rendering of a v2 limit: 0 -> nothing, -1 -> "max", else decimal.
/// Values below -1 are refused via `bad`.
fn limit_value(value: i64, bad: fn(i64) -> Error) -> Result<Option<String>, Error> {
    match value {
        0 => Ok(None),
        -1 => Ok(Some("max".into())),
        v if v < -1 => Err(bad(v)),
        v => Ok(Some(v.to_string())),
    }
}

// ---------------------------------------------------------------------------
// The writes
// ---------------------------------------------------------------------------

/// Every cgroup v2 file write runc 1.1 performs for `resources`, in runc's
/// order, or the first validation error. Validation is complete before
/// anything is returned, so a caller never applies half a configuration
/// because of a bad field.
pub fn writes_for_host(resources: &LinuxResources, host: &HostInfo) -> Result<Vec<Write>, Error> {
    let mut out = Vec::new();
    pids(resources, &mut out);
    if let Some(m) = resources.memory() {
        memory(m, &mut out)?;
    }
    if let Some(b) = resources.block_io() {
        io(b, host.io_weight, &mut out)?;
    }
    if let Some(c) = resources.cpu() {
        cpu(c, &mut out)?;
        cpuset(c, &mut out);
    }
    hugetlb(resources, &mut out)?;
    rdma(resources, &mut out)?;
    unified(resources, &mut out)?;
    Ok(out)
}

/// pids.max. runc 1.1 skips 0 (its "unset"), writes "max" for -1 and the
/// number otherwise. Values below -1 would reach the kernel verbatim in runc
/// 1.1 and fail; like later runc we treat every negative value as "max".
fn pids(r: &LinuxResources, out: &mut Vec<Write>) {
    let Some(p) = r.pids() else { return };
    let value = match p.limit() {
        0 => return,
        l if l < 0 => "max".to_string(),
        l => l.to_string(),
    };
    out.push(Write::new(
        "pids",
        "pids.max",
        value,
        "linux.resources.pids.limit",
    ));
}

/// memory.swap.max, memory.max, memory.low — in that order, as runc does.
///
/// Not written on v2 by runc 1.1: `kernel`/`kernelTCP` (warned about and
/// ignored), `swappiness`, `disableOOMKiller`, `useHierarchy`,
/// `checkBeforeUpdate` (silently ignored). runc 1.1 never writes
/// `memory.oom.group` from the cgroupfs driver either.
fn memory(m: &LinuxMemory, out: &mut Vec<Write>) -> Result<(), Error> {
    let limit = m.limit().unwrap_or(0);
    let reservation = m.reservation().unwrap_or(0);
    let swap = m.swap().unwrap_or(0);
    if limit == 0 && reservation == 0 && swap == 0 {
        return Ok(());
    }
    // Validate everything before emitting anything.
    let swap_v = swap_max_value(swap, limit)?;
    let limit_v = limit_value(limit, Error::MemoryLimit)?;
    let low_v = limit_value(reservation, Error::MemoryReservation)?;
    if let Some(v) = swap_v {
        out.push(Write::new(
            "memory",
            "memory.swap.max",
            v,
            "linux.resources.memory.swap",
        ));
    }
    if let Some(v) = limit_v {
        out.push(Write::new(
            "memory",
            "memory.max",
            v,
            "linux.resources.memory.limit",
        ));
    }
    if let Some(v) = low_v {
        out.push(Write::new(
            "memory",
            "memory.low",
            v,
            "linux.resources.memory.reservation",
        ));
    }
    Ok(())
}

/// Whether [`writes_for_host`] needs to know the [`IoWeightBackend`]: runc
/// only looks at `io.bfq.weight` when a weight or per-device weight is set.
pub fn needs_io_weight_probe(resources: &LinuxResources) -> bool {
    resources.block_io().as_ref().is_some_and(|b| {
        b.weight().unwrap_or(0) != 0 || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
    })
}

/// Classifies the host from the content of `io.bfq.weight` (`None` when the
/// file does not exist). runc reads the file: a lone number means an old
/// kernel without per-device support; anything else ("default 100\n...")
/// means per-device entries are accepted.
pub fn io_weight_backend(io_bfq_weight: Option<&str>) -> IoWeightBackend {
    match io_bfq_weight {
        None => IoWeightBackend::IoWeight,
        Some(text) if text.trim().parse::<i64>().is_ok() => IoWeightBackend::Bfq,
        Some(_) => IoWeightBackend::BfqPerDevice,
    }
}

fn device_number(field: String, value: i64) -> Result<i64, Error> {
    if value < 0 {
        return Err(Error::DeviceNumber { field, value });
    }
    Ok(value)
}

/// io.weight or io.bfq.weight, per-device BFQ weights, then io.max lines:
/// all rbps entries, then wbps, riops, wiops, one write per entry.
///
/// `leafWeight` (group and per device) has no v2 equivalent; runc 1.1 ignores
/// it. Per-device weights are only written with
/// [`IoWeightBackend::BfqPerDevice`]; otherwise runc drops them silently.
/// Per-device entries without a `weight` (leaf-weight-only entries) are
/// skipped: runc would write "MAJ:MIN 0", which BFQ rejects with ERANGE.
fn io(b: &LinuxBlockIo, backend: IoWeightBackend, out: &mut Vec<Write>) -> Result<(), Error> {
    let mut w = Vec::new();
    let weight = b.weight().unwrap_or(0);
    // Validate the group weight whatever the backend (the spec range is
    // 10..=1000; BFQ itself would take 1..=1000).
    let converted = blkio_weight_to_io_weight(weight)?;
    if let Some(conv) = converted {
        if backend == IoWeightBackend::IoWeight {
            w.push(Write::new(
                "io",
                "io.weight",
                conv.to_string(),
                "linux.resources.blockIO.weight",
            ));
        } else {
            w.push(Write::new(
                "io",
                "io.bfq.weight",
                weight.to_string(),
                "linux.resources.blockIO.weight",
            ));
        }
    }
    for (i, wd) in b.weight_device().iter().flatten().enumerate() {
        let field = format!("linux.resources.blockIO.weightDevice[{i}]");
        let major = device_number(format!("{field}.major"), wd.major())?;
        let minor = device_number(format!("{field}.minor"), wd.minor())?;
        let Some(dev_weight) = wd.weight() else {
            continue;
        };
        if !BLKIO_WEIGHT_RANGE.contains(&dev_weight) {
            return Err(Error::DeviceWeight {
                field: format!("{field}.weight"),
                value: dev_weight,
            });
        }
        if backend == IoWeightBackend::BfqPerDevice {
            w.push(Write::new(
                "io",
                "io.bfq.weight",
                format!("{major}:{minor} {dev_weight}"),
                field,
            ));
        }
    }
    let lists: [(&Option<Vec<LinuxThrottleDevice>>, &str, &str); 4] = [
        (
            b.throttle_read_bps_device(),
            "rbps",
            "throttleReadBpsDevice",
        ),
        (
            b.throttle_write_bps_device(),
            "wbps",
            "throttleWriteBpsDevice",
        ),
        (
            b.throttle_read_iops_device(),
            "riops",
            "throttleReadIOPSDevice",
        ),
        (
            b.throttle_write_iops_device(),
            "wiops",
            "throttleWriteIOPSDevice",
        ),
    ];
    for (list, key, name) in lists {
        for (i, td) in list.iter().flatten().enumerate() {
            let field = format!("linux.resources.blockIO.{name}[{i}]");
            let major = device_number(format!("{field}.major"), td.major())?;
            let minor = device_number(format!("{field}.minor"), td.minor())?;
            w.push(Write::new(
                "io",
                "io.max",
                format!("{major}:{minor} {key}={}", td.rate()),
                field,
            ));
        }
    }
    out.append(&mut w);
    Ok(())
}

/// cpu.weight from shares, then cpu.max.
///
/// cpu.max is written when quota or period is non-zero: the quota if it is
/// positive, otherwise "max", followed by the period (100000 when unset).
/// So a period alone writes "max PERIOD", which also clears any quota.
///
/// runc 1.1 does not write `realtimeRuntime`/`realtimePeriod` on v2 (there is
/// no v2 interface for them) and silently ignores them; it also predates
/// `cpu.idle` and `cpu.max.burst`, so `idle` and `burst` are not written.
fn cpu(c: &LinuxCpu, out: &mut Vec<Write>) -> Result<(), Error> {
    let weight = cpu_shares_to_weight(c.shares().unwrap_or(0))?;
    if let Some(weight) = weight {
        out.push(Write::new(
            "cpu",
            "cpu.weight",
            weight.to_string(),
            "linux.resources.cpu.shares",
        ));
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if (1..CPU_QUOTA_MIN).contains(&quota) {
        return Err(Error::CpuQuota(quota));
    }
    if period != 0 && !CPU_PERIOD_RANGE.contains(&period) {
        return Err(Error::CpuPeriod(period));
    }
    if quota != 0 || period != 0 {
        let q = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        let p = if period == 0 {
            DEFAULT_CPU_PERIOD
        } else {
            period
        };
        let origin = if quota != 0 {
            "linux.resources.cpu.quota"
        } else {
            "linux.resources.cpu.period"
        };
        out.push(Write::new("cpu", "cpu.max", format!("{q} {p}"), origin));
    }
    Ok(())
}

/// cpuset.cpus then cpuset.mems, verbatim, when non-empty.
fn cpuset(c: &LinuxCpu, out: &mut Vec<Write>) {
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        out.push(Write::new(
            "cpuset",
            "cpuset.cpus",
            cpus,
            "linux.resources.cpu.cpus",
        ));
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        out.push(Write::new(
            "cpuset",
            "cpuset.mems",
            mems,
            "linux.resources.cpu.mems",
        ));
    }
}

/// For each limit: hugetlb.<size>.max, then hugetlb.<size>.rsvd.max with the
/// same value, the latter optional (runc stops trying the .rsvd files after
/// the first ENOENT; skipping every ENOENT is equivalent since support is
/// kernel-wide).
fn hugetlb(r: &LinuxResources, out: &mut Vec<Write>) -> Result<(), Error> {
    let mut w = Vec::new();
    for (index, h) in r.hugepage_limits().iter().flatten().enumerate() {
        let size = h.page_size();
        // Kernel names are like "64KB", "2MB", "1GB": letters and digits only.
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::HugepageSize {
                index,
                page_size: size.clone(),
            });
        }
        if h.limit() < 0 {
            return Err(Error::HugepageLimit {
                index,
                limit: h.limit(),
            });
        }
        let origin = format!("linux.resources.hugepageLimits[{index}]");
        let value = h.limit().to_string();
        w.push(Write::new(
            "hugetlb",
            format!("hugetlb.{size}.max"),
            value.clone(),
            origin.clone(),
        ));
        let mut rsvd = Write::new("hugetlb", format!("hugetlb.{size}.rsvd.max"), value, origin);
        rsvd.optional = true;
        w.push(rsvd);
    }
    out.append(&mut w);
    Ok(())
}

/// One rdma.max write per device: "DEV[ hca_handle=N][ hca_object=N]".
/// runc iterates a Go map (random order); we sort by device name. A device
/// with neither limit still gets a write of its bare name, as in runc (the
/// kernel accepts it as a no-op for an existing device).
fn rdma(r: &LinuxResources, out: &mut Vec<Write>) -> Result<(), Error> {
    let Some(map) = r.rdma() else { return Ok(()) };
    let mut devices: Vec<_> = map.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    let mut w = Vec::new();
    for (dev, limits) in devices {
        if dev.is_empty() || !dev.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::RdmaDevice(dev.clone()));
        }
        let mut line = dev.clone();
        if let Some(h) = limits.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = limits.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        w.push(Write::new(
            "rdma",
            "rdma.max",
            line,
            format!("linux.resources.rdma[{dev:?}]"),
        ));
    }
    out.append(&mut w);
    Ok(())
}

/// The controller a `unified` key belongs to: the part before the first
/// '.', or `None` for the core `cgroup.*` files. Fails on keys that are not
/// a plain `CONTROLLER.PARAMETER` file name.
///
/// runc 1.1 only refuses keys containing '/', writes the rest as they are,
/// and only when a write fails with EPERM/ENOENT checks the key's form and
/// whether its controller is listed in `cgroup.controllers` ("controller
/// not available"). We check the form up front instead.
pub fn unified_key_controller(key: &str) -> Result<Option<&str>, Error> {
    let bad = |reason| Error::UnifiedKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(bad("it is empty"));
    }
    if key.contains('/') {
        return Err(bad("it must be a file name (no '/')"));
    }
    if key == "." || key == ".." {
        return Err(bad("it must be a file name"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(bad(
            "only letters, digits, '.', '_' and '-' occur in cgroup file names",
        ));
    }
    match key.split_once('.') {
        Some((ctrl, param)) if !ctrl.is_empty() && !param.is_empty() && !param.ends_with('.') => {
            Ok(if ctrl == "cgroup" { None } else { Some(ctrl) })
        }
        _ => Err(bad("it must be of the form CONTROLLER.PARAMETER")),
    }
}

/// The `unified` map, written last and verbatim so it overrides earlier
/// writes to the same file. Sorted by key for determinism (runc: Go map
/// order, i.e. random).
fn unified(r: &LinuxResources, out: &mut Vec<Write>) -> Result<(), Error> {
    let Some(map) = r.unified() else {
        return Ok(());
    };
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut w = Vec::new();
    for (key, value) in entries {
        let controller = unified_key_controller(key)?;
        w.push(Write {
            controller: controller.map(str::to_string),
            file: key.clone(),
            value: value.clone(),
            optional: false,
            origin: format!("linux.resources.unified[{key:?}]"),
        });
    }
    out.append(&mut w);
    Ok(())
}

/// OCI fields that are set in `resources` but that runc 1.1's v2 driver
/// does not act on, for the caller to warn about.
pub fn ignored_fields(resources: &LinuxResources, host: &HostInfo) -> Vec<String> {
    let mut v = Vec::new();
    let mut note = |set: bool, name: &str| {
        if set {
            v.push(format!("linux.resources.{name}"));
        }
    };
    if let Some(m) = resources.memory() {
        note(m.kernel().is_some(), "memory.kernel");
        note(m.kernel_tcp().is_some(), "memory.kernelTCP");
        note(m.swappiness().is_some(), "memory.swappiness");
        note(m.disable_oom_killer().is_some(), "memory.disableOOMKiller");
        note(m.use_hierarchy().is_some(), "memory.useHierarchy");
        note(
            m.check_before_update().is_some(),
            "memory.checkBeforeUpdate",
        );
    }
    if let Some(c) = resources.cpu() {
        note(c.realtime_runtime().is_some(), "cpu.realtimeRuntime");
        note(c.realtime_period().is_some(), "cpu.realtimePeriod");
        note(c.idle().is_some(), "cpu.idle");
        note(c.burst().is_some(), "cpu.burst");
    }
    if let Some(b) = resources.block_io() {
        note(b.leaf_weight().is_some(), "blockIO.leafWeight");
        for (i, wd) in b.weight_device().iter().flatten().enumerate() {
            note(
                wd.leaf_weight().is_some(),
                &format!("blockIO.weightDevice[{i}].leafWeight"),
            );
            note(
                wd.weight().is_some() && host.io_weight != IoWeightBackend::BfqPerDevice,
                &format!("blockIO.weightDevice[{i}].weight"),
            );
        }
    }
    if let Some(n) = resources.network() {
        note(n.class_id().is_some(), "network.classID");
        note(
            n.priorities().as_ref().is_some_and(|p| !p.is_empty()),
            "network.priorities",
        );
    }
    v
}

// ---------------------------------------------------------------------------
// Controllers
// ---------------------------------------------------------------------------

/// Splits the content of a `cgroup.controllers` (or `cgroup.subtree_control`)
/// file into controller names.
pub fn parse_controllers(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

// ---------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------

/// Content of `cgroup.events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CgroupEvents {
    /// Some process lives in this cgroup or a descendant.
    pub populated: bool,
    /// The cgroup is frozen (key absent before kernel 5.2: false).
    pub frozen: bool,
}

/// Content of `memory.events` (or `memory.events.local`); absent keys are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryEvents {
    pub low: u64,
    pub high: u64,
    pub max: u64,
    pub oom: u64,
    pub oom_kill: u64,
    pub oom_group_kill: u64,
}

/// Iterates "key value" lines of a flat-keyed cgroup file.
pub(super) fn key_values<'a>(
    file: &'static str,
    text: &'a str,
) -> impl Iterator<Item = Result<(&'a str, u64), ParseError>> + 'a {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(move |line| {
            let err = |reason| ParseError {
                file,
                line: line.to_string(),
                reason,
            };
            let mut it = line.split_whitespace();
            let (Some(k), Some(v), None) = (it.next(), it.next(), it.next()) else {
                return Err(err("expected \"KEY VALUE\""));
            };
            let v = v
                .parse::<u64>()
                .map_err(|_| err("value is not an unsigned integer"))?;
            Ok((k, v))
        })
}

/// Parses `cgroup.events`. Unknown keys are ignored.
pub fn parse_events(text: &str) -> Result<CgroupEvents, ParseError> {
    let mut ev = CgroupEvents::default();
    for kv in key_values("cgroup.events", text) {
        let (k, v) = kv?;
        let slot = match k {
            "populated" => &mut ev.populated,
            "frozen" => &mut ev.frozen,
            _ => continue,
        };
        *slot = match v {
            0 => false,
            1 => true,
            _ => {
                return Err(ParseError {
                    file: "cgroup.events",
                    line: format!("{k} {v}"),
                    reason: "value is not 0 or 1",
                })
            }
        };
    }
    Ok(ev)
}

/// Parses `memory.events`. Unknown keys are ignored.
pub fn parse_memory_events(text: &str) -> Result<MemoryEvents, ParseError> {
    let mut ev = MemoryEvents::default();
    for kv in key_values("memory.events", text) {
        let (k, v) = kv?;
        match k {
            "low" => ev.low = v,
            "high" => ev.high = v,
            "max" => ev.max = v,
            "oom" => ev.oom = v,
            "oom_kill" => ev.oom_kill = v,
            "oom_group_kill" => ev.oom_group_kill = v,
            _ => {}
        }
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(resources: &LinuxResources) -> Result<Vec<Write>, Error> {
        writes_for_host(resources, &HostInfo::default())
    }

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).expect("test JSON must be a valid LinuxResources")
    }

    /// (file, value) pairs, for compact assertions.
    fn fv(w: &[Write]) -> Vec<(String, String)> {
        w.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    fn mem(
        limit: Option<i64>,
        swap: Option<i64>,
        reservation: Option<i64>,
    ) -> Result<Vec<(String, String)>, Error> {
        let mut m = serde_json::Map::new();
        if let Some(l) = limit {
            m.insert("limit".into(), l.into());
        }
        if let Some(s) = swap {
            m.insert("swap".into(), s.into());
        }
        if let Some(r) = reservation {
            m.insert("reservation".into(), r.into());
        }
        let json = serde_json::json!({ "memory": m }).to_string();
        writes(&res(&json)).map(|w| fv(&w))
    }

    // ---- conversions ----

    #[test]
    fn cpu_shares_formula() {
        // 1 + (s-2)*9999/262142, by hand:
        assert_eq!(cpu_shares_to_weight(0), Ok(None));
        assert_eq!(cpu_shares_to_weight(2), Ok(Some(1)));
        // (1022*9999)/262142 = 10218978/262142 = 38.98 -> 38, +1
        assert_eq!(cpu_shares_to_weight(1024), Ok(Some(39)));
        // (510*9999)/262142 = 5099490/262142 = 19.45 -> 19, +1
        assert_eq!(cpu_shares_to_weight(512), Ok(Some(20)));
        // (262142*9999)/262142 = 9999, +1
        assert_eq!(cpu_shares_to_weight(262_144), Ok(Some(10000)));
        // Upper edge: 262168*9999/262142 = 9999.99 -> 9999, +1
        assert_eq!(cpu_shares_to_weight(262_170), Ok(Some(10000)));
        assert_eq!(
            cpu_shares_to_weight(262_171),
            Err(Error::CpuShares(262_171))
        );
        assert_eq!(cpu_shares_to_weight(1), Err(Error::CpuShares(1)));
        assert_eq!(
            cpu_shares_to_weight(u64::MAX),
            Err(Error::CpuShares(u64::MAX))
        );
    }

    #[test]
    fn blkio_weight_formula() {
        assert_eq!(blkio_weight_to_io_weight(0), Ok(None));
        assert_eq!(blkio_weight_to_io_weight(10), Ok(Some(1)));
        // 1 + 490*9999/990 = 1 + 4899510/990 = 1 + 4949
        assert_eq!(blkio_weight_to_io_weight(500), Ok(Some(4950)));
        // 1 + 90*9999/990 = 1 + 899910/990 = 1 + 909 (909.0)
        assert_eq!(blkio_weight_to_io_weight(100), Ok(Some(910)));
        // 1 + 1*9999/990 = 1 + 10 (10.1)
        assert_eq!(blkio_weight_to_io_weight(11), Ok(Some(11)));
        assert_eq!(blkio_weight_to_io_weight(1000), Ok(Some(10000)));
        assert_eq!(blkio_weight_to_io_weight(9), Err(Error::BlkioWeight(9)));
        assert_eq!(
            blkio_weight_to_io_weight(1001),
            Err(Error::BlkioWeight(1001))
        );
    }

    #[test]
    fn swap_conversion_cases() {
        let g = 1 << 30;
        assert_eq!(swap_max_value(0, -1), Ok(Some("max".into())));
        assert_eq!(swap_max_value(-1, g), Ok(Some("max".into())));
        assert_eq!(swap_max_value(-1, 0), Ok(Some("max".into())));
        assert_eq!(swap_max_value(0, g), Ok(None));
        assert_eq!(swap_max_value(0, 0), Ok(None));
        assert_eq!(swap_max_value(g, g), Ok(Some("0".into())));
        assert_eq!(swap_max_value(3 * g, g), Ok(Some((2 * g).to_string())));
        assert_eq!(
            swap_max_value(g, 2 * g),
            Err(Error::SwapBelowLimit {
                swap: g,
                limit: 2 * g
            })
        );
        assert_eq!(
            swap_max_value(g, 0),
            Err(Error::SwapWithoutLimit { swap: g, limit: 0 })
        );
        assert_eq!(
            swap_max_value(g, -1),
            Err(Error::SwapWithoutLimit { swap: g, limit: -1 })
        );
        assert_eq!(swap_max_value(g, -7), Err(Error::MemoryLimit(-7)));
        assert_eq!(
            swap_max_value(-2, g),
            Err(Error::SwapBelowLimit { swap: -2, limit: g })
        );
    }

    // ---- memory ----

    #[test]
    fn memory_writes_and_order() {
        assert_eq!(
            mem(Some(1000), Some(3000), Some(500)).unwrap(),
            pairs(&[
                ("memory.swap.max", "2000"),
                ("memory.max", "1000"),
                ("memory.low", "500")
            ])
        );
        assert_eq!(
            mem(Some(1000), None, None).unwrap(),
            pairs(&[("memory.max", "1000")])
        );
        assert_eq!(
            mem(Some(-1), None, None).unwrap(),
            pairs(&[("memory.swap.max", "max"), ("memory.max", "max")])
        );
        assert_eq!(
            mem(Some(1000), Some(1000), None).unwrap(),
            pairs(&[("memory.swap.max", "0"), ("memory.max", "1000")])
        );
        assert_eq!(
            mem(Some(1000), Some(-1), None).unwrap(),
            pairs(&[("memory.swap.max", "max"), ("memory.max", "1000")])
        );
        assert_eq!(
            mem(None, None, Some(-1)).unwrap(),
            pairs(&[("memory.low", "max")])
        );
        assert_eq!(mem(Some(0), Some(0), Some(0)).unwrap(), pairs(&[]));
        assert!(writes(&res(r#"{"memory":{}}"#)).unwrap().is_empty());
        let w = writes(&res(r#"{"memory":{"limit":1000}}"#)).unwrap();
        assert_eq!(w[0].controller.as_deref(), Some("memory"));
        assert_eq!(w[0].origin, "linux.resources.memory.limit");
        assert!(!w[0].optional);
    }

    #[test]
    fn memory_errors() {
        assert_eq!(
            mem(Some(2000), Some(1000), None),
            Err(Error::SwapBelowLimit {
                swap: 1000,
                limit: 2000
            })
        );
        assert_eq!(
            mem(None, Some(1000), None),
            Err(Error::SwapWithoutLimit {
                swap: 1000,
                limit: 0
            })
        );
        assert_eq!(mem(Some(-2), None, None), Err(Error::MemoryLimit(-2)));
        assert_eq!(mem(None, None, Some(-3)), Err(Error::MemoryReservation(-3)));
        let msg = mem(Some(2000), Some(1000), None).unwrap_err().to_string();
        assert!(msg.contains("linux.resources.memory.swap (1000)"), "{msg}");
        assert!(msg.contains("linux.resources.memory.limit (2000)"), "{msg}");
        let msg = mem(None, Some(5), None).unwrap_err().to_string();
        assert!(
            msg.starts_with("linux.resources.memory.swap (5) needs linux.resources.memory.limit"),
            "{msg}"
        );
    }

    #[test]
    fn memory_ignored_fields() {
        let r =
            res(r#"{"memory":{"kernel":1,"kernelTCP":2,"swappiness":10,"disableOOMKiller":true}}"#);
        assert!(writes(&r).unwrap().is_empty());
        assert_eq!(
            ignored_fields(&r, &HostInfo::default()),
            vec![
                "linux.resources.memory.kernel",
                "linux.resources.memory.kernelTCP",
                "linux.resources.memory.swappiness",
                "linux.resources.memory.disableOOMKiller"
            ]
        );
    }

    // ---- pids ----

    #[test]
    fn pids_limit() {
        let p = |l: i64| fv(&writes(&res(&format!(r#"{{"pids":{{"limit":{l}}}}}"#))).unwrap());
        assert_eq!(p(100), pairs(&[("pids.max", "100")]));
        assert_eq!(p(1), pairs(&[("pids.max", "1")]));
        assert_eq!(p(-1), pairs(&[("pids.max", "max")]));
        assert_eq!(p(-5), pairs(&[("pids.max", "max")]));
        assert_eq!(p(0), pairs(&[]));
        let w = writes(&res(r#"{"pids":{"limit":7}}"#)).unwrap();
        assert_eq!(w[0].controller.as_deref(), Some("pids"));
    }

    // ---- cpu ----

    fn cpu_w(json: &str) -> Result<Vec<(String, String)>, Error> {
        writes(&res(&format!(r#"{{"cpu":{json}}}"#))).map(|w| fv(&w))
    }

    #[test]
    fn cpu_weight_and_max() {
        assert_eq!(
            cpu_w(r#"{"shares":1024,"quota":50000,"period":200000}"#).unwrap(),
            pairs(&[("cpu.weight", "39"), ("cpu.max", "50000 200000")])
        );
        assert_eq!(
            cpu_w(r#"{"quota":50000}"#).unwrap(),
            pairs(&[("cpu.max", "50000 100000")])
        );
        assert_eq!(
            cpu_w(r#"{"quota":-1}"#).unwrap(),
            pairs(&[("cpu.max", "max 100000")])
        );
        assert_eq!(
            cpu_w(r#"{"quota":-1,"period":50000}"#).unwrap(),
            pairs(&[("cpu.max", "max 50000")])
        );
        // Period alone: runc writes "max PERIOD".
        assert_eq!(
            cpu_w(r#"{"period":250000}"#).unwrap(),
            pairs(&[("cpu.max", "max 250000")])
        );
        assert_eq!(cpu_w(r#"{"quota":0,"period":0}"#).unwrap(), pairs(&[]));
        // The kernel's CFS limits, refused before anything is written.
        assert_eq!(cpu_w(r#"{"quota":999}"#), Err(Error::CpuQuota(999)));
        assert_eq!(cpu_w(r#"{"period":999}"#), Err(Error::CpuPeriod(999)));
        assert_eq!(
            cpu_w(r#"{"quota":1000,"period":1000000}"#).unwrap(),
            pairs(&[("cpu.max", "1000 1000000")])
        );
        assert_eq!(
            cpu_w(r#"{"period":1000001}"#),
            Err(Error::CpuPeriod(1_000_001))
        );
        assert_eq!(cpu_w(r#"{"shares":0}"#).unwrap(), pairs(&[]));
        assert_eq!(
            cpu_w(r#"{"shares":2}"#).unwrap(),
            pairs(&[("cpu.weight", "1")])
        );
        assert_eq!(
            cpu_w(r#"{"shares":262144}"#).unwrap(),
            pairs(&[("cpu.weight", "10000")])
        );
        assert_eq!(cpu_w(r#"{"shares":1}"#), Err(Error::CpuShares(1)));
        assert!(Error::CpuShares(1)
            .to_string()
            .starts_with("linux.resources.cpu.shares (1)"));
    }

    #[test]
    fn cpu_ignored_and_cpuset() {
        let r = res(
            r#"{"cpu":{"realtimeRuntime":950000,"realtimePeriod":1000000,"idle":1,"burst":5,
                "cpus":"0-3","mems":"0"}}"#,
        );
        assert_eq!(
            fv(&writes(&r).unwrap()),
            pairs(&[("cpuset.cpus", "0-3"), ("cpuset.mems", "0")])
        );
        assert_eq!(
            ignored_fields(&r, &HostInfo::default()),
            vec![
                "linux.resources.cpu.realtimeRuntime",
                "linux.resources.cpu.realtimePeriod",
                "linux.resources.cpu.idle",
                "linux.resources.cpu.burst"
            ]
        );
        assert_eq!(cpu_w(r#"{"cpus":"","mems":""}"#).unwrap(), pairs(&[]));
        assert_eq!(
            cpu_w(r#"{"mems":"0-1"}"#).unwrap(),
            pairs(&[("cpuset.mems", "0-1")])
        );
        let w = writes(&res(r#"{"cpu":{"cpus":"1","shares":1024}}"#)).unwrap();
        assert_eq!(w[0].controller.as_deref(), Some("cpu"));
        assert_eq!(w[1].controller.as_deref(), Some("cpuset"));
    }

    // ---- io ----

    const BLKIO: &str = r#"{"blockIO":{
        "weight":500, "leafWeight":300,
        "weightDevice":[{"major":8,"minor":0,"weight":600,"leafWeight":100},
                        {"major":8,"minor":16,"leafWeight":100}],
        "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576},{"major":8,"minor":16,"rate":2}],
        "throttleWriteBpsDevice":[{"major":8,"minor":0,"rate":3}],
        "throttleReadIOPSDevice":[{"major":253,"minor":1,"rate":100}],
        "throttleWriteIOPSDevice":[{"major":8,"minor":0,"rate":200}]}}"#;

    #[test]
    fn io_without_bfq() {
        let r = res(BLKIO);
        assert!(needs_io_weight_probe(&r));
        assert_eq!(
            fv(&writes(&r).unwrap()),
            pairs(&[
                ("io.weight", "4950"),
                ("io.max", "8:0 rbps=1048576"),
                ("io.max", "8:16 rbps=2"),
                ("io.max", "8:0 wbps=3"),
                ("io.max", "253:1 riops=100"),
                ("io.max", "8:0 wiops=200"),
            ])
        );
        assert_eq!(
            ignored_fields(&r, &HostInfo::default()),
            vec![
                "linux.resources.blockIO.leafWeight",
                "linux.resources.blockIO.weightDevice[0].leafWeight",
                "linux.resources.blockIO.weightDevice[0].weight",
                "linux.resources.blockIO.weightDevice[1].leafWeight",
            ]
        );
    }

    #[test]
    fn io_with_bfq() {
        let r = res(BLKIO);
        let old = HostInfo {
            io_weight: IoWeightBackend::Bfq,
        };
        let w = fv(&writes_for_host(&r, &old).unwrap());
        assert_eq!(w[0], ("io.bfq.weight".to_string(), "500".to_string()));
        assert_eq!(w[1].0, "io.max");
        let new = HostInfo {
            io_weight: IoWeightBackend::BfqPerDevice,
        };
        let w = fv(&writes_for_host(&r, &new).unwrap());
        assert_eq!(w[0], ("io.bfq.weight".to_string(), "500".to_string()));
        assert_eq!(w[1], ("io.bfq.weight".to_string(), "8:0 600".to_string()));
        assert_eq!(w[2], ("io.max".to_string(), "8:0 rbps=1048576".to_string()));
        assert_eq!(w.len(), 7);
        assert!(!ignored_fields(&r, &new)
            .iter()
            .any(|f| f.ends_with("[0].weight")));
    }

    #[test]
    fn io_probe_and_errors() {
        assert_eq!(io_weight_backend(None), IoWeightBackend::IoWeight);
        assert_eq!(io_weight_backend(Some("100\n")), IoWeightBackend::Bfq);
        assert_eq!(
            io_weight_backend(Some("default 100\n8:0 300\n")),
            IoWeightBackend::BfqPerDevice
        );
        assert!(!needs_io_weight_probe(&res(
            r#"{"blockIO":{"throttleReadBpsDevice":[]}}"#
        )));
        assert!(!needs_io_weight_probe(&res(r#"{}"#)));
        assert!(needs_io_weight_probe(&res(
            r#"{"blockIO":{"weightDevice":[{"major":1,"minor":2}]}}"#
        )));

        assert_eq!(
            writes(&res(r#"{"blockIO":{"weight":5}}"#)),
            Err(Error::BlkioWeight(5))
        );
        let e = writes(&res(
            r#"{"blockIO":{"throttleWriteIOPSDevice":[{"major":8,"minor":-1,"rate":1}]}}"#,
        ));
        assert_eq!(
            e,
            Err(Error::DeviceNumber {
                field: "linux.resources.blockIO.throttleWriteIOPSDevice[0].minor".into(),
                value: -1
            })
        );
        let e = writes(&res(
            r#"{"blockIO":{"weightDevice":[{"major":8,"minor":0,"weight":2000}]}}"#,
        ));
        assert_eq!(
            e.unwrap_err().to_string(),
            "linux.resources.blockIO.weightDevice[0].weight (2000) is outside 10..=1000"
        );
        // Leaf-weight only: nothing written, even with per-device BFQ.
        let r = res(r#"{"blockIO":{"leafWeight":500}}"#);
        assert!(writes_for_host(
            &r,
            &HostInfo {
                io_weight: IoWeightBackend::BfqPerDevice
            }
        )
        .unwrap()
        .is_empty());
    }

    // ---- hugetlb ----

    #[test]
    fn hugetlb_writes() {
        let r = res(
            r#"{"hugepageLimits":[{"pageSize":"2MB","limit":209715200},{"pageSize":"1GB","limit":0}]}"#,
        );
        let w = writes(&r).unwrap();
        assert_eq!(
            fv(&w),
            pairs(&[
                ("hugetlb.2MB.max", "209715200"),
                ("hugetlb.2MB.rsvd.max", "209715200"),
                ("hugetlb.1GB.max", "0"),
                ("hugetlb.1GB.rsvd.max", "0"),
            ])
        );
        assert_eq!(
            w.iter().map(|w| w.optional).collect::<Vec<_>>(),
            vec![false, true, false, true]
        );
        assert!(w.iter().all(|w| w.controller.as_deref() == Some("hugetlb")));
        assert_eq!(
            writes(&res(
                r#"{"hugepageLimits":[{"pageSize":"../x","limit":1}]}"#
            )),
            Err(Error::HugepageSize {
                index: 0,
                page_size: "../x".into()
            })
        );
        assert_eq!(
            writes(&res(
                r#"{"hugepageLimits":[{"pageSize":"2MB","limit":1},{"pageSize":"","limit":1}]}"#
            )),
            Err(Error::HugepageSize {
                index: 1,
                page_size: "".into()
            })
        );
        assert_eq!(
            writes(&res(
                r#"{"hugepageLimits":[{"pageSize":"2MB","limit":-1}]}"#
            )),
            Err(Error::HugepageLimit {
                index: 0,
                limit: -1
            })
        );
    }

    // ---- rdma ----

    #[test]
    fn rdma_writes() {
        let r = res(
            r#"{"rdma":{"mlx5_1":{"hcaObjects":1000},"mlx4_0":{"hcaHandles":2,"hcaObjects":2000},"rxe0":{}}}"#,
        );
        assert_eq!(
            fv(&writes(&r).unwrap()),
            pairs(&[
                ("rdma.max", "mlx4_0 hca_handle=2 hca_object=2000"),
                ("rdma.max", "mlx5_1 hca_object=1000"),
                ("rdma.max", "rxe0"),
            ])
        );
        assert_eq!(
            writes(&res(r#"{"rdma":{"a b":{"hcaHandles":1}}}"#)),
            Err(Error::RdmaDevice("a b".into()))
        );
    }

    // ---- unified ----

    #[test]
    fn unified_last_and_overriding() {
        let r = res(r#"{"memory":{"limit":1000},"pids":{"limit":10},
                "unified":{"memory.max":"2000","cgroup.max.depth":"3","memory.high":"900","misc.max":"res 1"}}"#);
        let w = writes(&r).unwrap();
        assert_eq!(
            fv(&w),
            pairs(&[
                ("pids.max", "10"),
                ("memory.max", "1000"),
                ("cgroup.max.depth", "3"),
                ("memory.high", "900"),
                ("memory.max", "2000"),
                ("misc.max", "res 1"),
            ])
        );
        // The unified value is the last write to memory.max, so it wins.
        assert_eq!(
            w.iter()
                .rev()
                .find(|w| w.file == "memory.max")
                .unwrap()
                .value,
            "2000"
        );
        assert_eq!(w[2].controller, None);
        assert_eq!(w[5].controller.as_deref(), Some("misc"));
        assert_eq!(w[5].origin, r#"linux.resources.unified["misc.max"]"#);
    }

    #[test]
    fn unified_key_validation() {
        assert_eq!(
            unified_key_controller("memory.swap.max"),
            Ok(Some("memory"))
        );
        assert_eq!(
            unified_key_controller("hugetlb.2MB.rsvd.max"),
            Ok(Some("hugetlb"))
        );
        assert_eq!(unified_key_controller("cgroup.freeze"), Ok(None));
        for bad in [
            "",
            "memory",
            ".max",
            "memory.",
            "memory..",
            "../memory.max",
            "a/b.c",
            "..",
            ".",
            "memory max",
            "mem\0.max",
        ] {
            assert!(
                matches!(unified_key_controller(bad), Err(Error::UnifiedKey { ref key, .. }) if key == bad),
                "{bad:?} should be refused"
            );
        }
        let e = writes(&res(r#"{"unified":{"../../etc/passwd":"x"}}"#)).unwrap_err();
        assert_eq!(e.to_string(), "linux.resources.unified key \"../../etc/passwd\" is invalid: it must be a file name (no '/')");
        // A bad key fails the whole translation, not just its entry.
        assert!(writes(&res(r#"{"pids":{"limit":3},"unified":{"nodot":"1"}}"#)).is_err());
    }

    // ---- controllers ----

    // ---- parsers ----

    #[test]
    fn parse_cgroup_events() {
        assert_eq!(
            parse_events("populated 1\nfrozen 0\n"),
            Ok(CgroupEvents {
                populated: true,
                frozen: false
            })
        );
        assert_eq!(
            parse_events("populated 0\nfrozen 1\n"),
            Ok(CgroupEvents {
                populated: false,
                frozen: true
            })
        );
        // Pre-5.2 kernels have no "frozen" line.
        assert_eq!(
            parse_events("populated 1\n"),
            Ok(CgroupEvents {
                populated: true,
                frozen: false
            })
        );
        assert_eq!(parse_events(""), Ok(CgroupEvents::default()));
        assert!(
            parse_events(
                "populated 1
newkey 7

"
            )
            .unwrap()
            .populated
        );
        assert!(parse_events("populated 2\n").is_err());
        assert!(parse_events("populated\n").is_err());
        assert!(parse_events("populated yes\n").is_err());
        let e = parse_events("populated 1 2\n").unwrap_err();
        assert_eq!(e.file, "cgroup.events");
        assert_eq!(e.line, "populated 1 2");
    }

    #[test]
    fn parse_memory_events_file() {
        let t = "low 1\nhigh 2\nmax 3\noom 4\noom_kill 5\noom_group_kill 6\n";
        assert_eq!(
            parse_memory_events(t),
            Ok(MemoryEvents {
                low: 1,
                high: 2,
                max: 3,
                oom: 4,
                oom_kill: 5,
                oom_group_kill: 6
            })
        );
        // Older kernels lack oom_group_kill; unknown keys are skipped.
        assert_eq!(
            parse_memory_events("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\nsock_throttled 9\n"),
            Ok(MemoryEvents {
                max: 12,
                oom: 1,
                oom_kill: 1,
                ..Default::default()
            })
        );
        assert_eq!(
            parse_memory_events("oom_kill 18446744073709551615\n")
                .unwrap()
                .oom_kill,
            u64::MAX
        );
        assert!(parse_memory_events("oom_kill -1\n").is_err());
        assert!(parse_memory_events("oom_kill\n").is_err());
    }

    // ---- whole-spec order ----

    #[test]
    fn full_order_matches_runc() {
        let r = res(
            r#"{"unified":{"cpu.idle":"1"},"rdma":{"mlx4_0":{"hcaHandles":1}},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
                "cpu":{"shares":512,"quota":1000,"cpus":"0","mems":"0"},
                "blockIO":{"weight":10,"throttleReadBpsDevice":[{"major":1,"minor":2,"rate":3}]},
                "memory":{"limit":100,"swap":300,"reservation":50},
                "pids":{"limit":64}}"#,
        );
        let files: Vec<String> = writes(&r).unwrap().into_iter().map(|w| w.file).collect();
        assert_eq!(
            files,
            vec![
                "pids.max",
                "memory.swap.max",
                "memory.max",
                "memory.low",
                "io.weight",
                "io.max",
                "cpu.weight",
                "cpu.max",
                "cpuset.cpus",
                "cpuset.mems",
                "hugetlb.2MB.max",
                "hugetlb.2MB.rsvd.max",
                "rdma.max",
                "cpu.idle",
            ]
        );
        assert!(writes(&res("{}")).unwrap().is_empty());
    }
}
