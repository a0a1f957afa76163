//! Device access control for cgroup v2 via a `BPF_PROG_TYPE_CGROUP_DEVICE`
//! program.
//!
//! cgroup v2 has no `devices.allow` / `devices.deny` files. Instead the kernel
//! runs every BPF program attached to the cgroup (attach type
//! `BPF_CGROUP_DEVICE`) whenever a member task opens or mknods a device node;
//! the access is granted only if every attached program returns 1.
//!
//! This module turns an OCI device rule list (`linux.resources.devices`) into
//! such a program, loads it and installs it on a cgroup directory, mirroring
//! what runc does on cgroup v2.
//!
//! # Rule semantics
//!
//! Since v1.0.0 runc does not evaluate the OCI list as "first/last matching
//! rule wins". It replays the list as if each entry were written to a cgroup
//! v1 `devices.allow` / `devices.deny` file and compiles the resulting state.
//! [`DevicePolicy::from_rules`] implements the same model:
//!
//! * The state starts as *default deny* with no exceptions (note: unlike a
//!   fresh cgroup v1, which starts as allow-all). An empty rule list
//!   therefore denies every device.
//! * A rule of type `a` resets the state: `allow` makes it default-allow,
//!   `deny` default-deny, and every exception is dropped. The major, minor
//!   and access of an `a` rule are ignored, as in cgroup v1 and runc.
//! * A `b`/`c` rule whose verdict differs from the current default adds an
//!   exception keyed by the exact `(type, major, minor)` triple (wildcards
//!   are part of the key); access bits of equal keys are merged.
//! * A `b`/`c` rule whose verdict equals the current default removes its
//!   access bits from the exception with *exactly* the same key, and only
//!   from that one. A broader rule such as `deny c 1:* rwm` does not revoke
//!   an earlier `allow c 1:3 rwm`.
//! * Removing access that a *broader* exception of the same type still grants
//!   (for example `allow c *:* rwm` followed by `deny c 1:3 w`) cannot be
//!   expressed in this model. cgroup v1 would silently ignore it, while runc
//!   (and this module) fail with [`DeviceError::WildcardHole`] so the user
//!   does not think a device is blocked when it is not.
//!
//! A request `(type, major, minor, access)` matches an exception when the
//! type is equal, each number is equal or the exception's number is a
//! wildcard, and the requested access is a subset of the exception's access.
//! If any exception matches, the opposite of the default verdict applies;
//! otherwise the default does. Access is not combined across exceptions:
//! with `allow c 1:3 r` and `allow c 1:* w`, opening 1:3 read-write is
//! denied (as in cgroup v1).
//!
//! runc appends its built-in [`DEFAULT_DEVICES`] *after* the user's rules,
//! so a container cannot revoke them; [`with_defaults`] reproduces that.
//!
//! # Installing the program
//!
//! [`apply`] loads the new program, lists the programs already attached to
//! the cgroup, attaches the new one with `BPF_F_ALLOW_MULTI` and only then
//! removes the old ones. When exactly one program was attached, the kernel
//! swaps it for the new one in a single step (`BPF_F_REPLACE`); otherwise,
//! for the short time between attach and detach, both old and new programs
//! run and a device must pass both (fail-closed). At no point does the
//! cgroup have no filter. Once attached, the program is owned by the cgroup:
//! it stays after our file descriptor is closed and is released when the
//! cgroup is removed.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

// ---------------------------------------------------------------------------
// Rule model
// ---------------------------------------------------------------------------

/// Device type selector of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// `a`: every device. Such a rule resets the whole policy.
    All,
    /// `c`: character devices.
    Char,
    /// `b`: block devices.
    Block,
}

impl DeviceKind {
    /// The cgroup v1 letter for this kind (`a`, `c` or `b`).
    pub const fn letter(self) -> char {
        match self {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        }
    }
}

/// Type of a concrete device node, as seen by the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeType {
    /// Character device (`BPF_DEVCG_DEV_CHAR`).
    Char,
    /// Block device (`BPF_DEVCG_DEV_BLOCK`).
    Block,
}

impl NodeType {
    /// The cgroup v1 letter for this type (`c` or `b`).
    pub const fn letter(self) -> char {
        match self {
            NodeType::Char => 'c',
            NodeType::Block => 'b',
        }
    }

    /// Value of the low 16 bits of `bpf_cgroup_dev_ctx.access_type`.
    pub const fn bpf_value(self) -> u32 {
        match self {
            NodeType::Block => BPF_DEVCG_DEV_BLOCK,
            NodeType::Char => BPF_DEVCG_DEV_CHAR,
        }
    }
}

/// A set of device access modes: read, write, mknod.
///
/// The bit values are the kernel's `BPF_DEVCG_ACC_*` values, so the set can
/// be compared directly with the upper half of `access_type`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Access(u8);

impl Access {
    /// No access at all (not valid in a rule).
    pub const NONE: Access = Access(0);
    /// `m`: create the node with mknod(2).
    pub const MKNOD: Access = Access(BPF_DEVCG_ACC_MKNOD as u8);
    /// `r`: open for reading.
    pub const READ: Access = Access(BPF_DEVCG_ACC_READ as u8);
    /// `w`: open for writing.
    pub const WRITE: Access = Access(BPF_DEVCG_ACC_WRITE as u8);
    /// `rwm`: everything.
    pub const RWM: Access = Access(Self::READ.0 | Self::WRITE.0 | Self::MKNOD.0);

    /// Raw bits (`BPF_DEVCG_ACC_*` values).
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Builds a set from raw bits; `None` if unknown bits are set.
    pub const fn from_bits(bits: u8) -> Option<Access> {
        if bits & !Self::RWM.0 == 0 {
            Some(Access(bits))
        } else {
            None
        }
    }

    /// Parses a cgroup access string made of `r`, `w` and `m` (any order,
    /// repeats allowed, as in runc). The empty string yields [`Access::NONE`].
    pub fn parse(s: &str) -> Result<Access, RuleError> {
        let mut bits = 0u8;
        for c in s.chars() {
            bits |= match c {
                'r' => Self::READ.0,
                'w' => Self::WRITE.0,
                'm' => Self::MKNOD.0,
                _ => return Err(RuleError::InvalidAccess(s.to_owned())),
            };
        }
        Ok(Access(bits))
    }

    /// `self ∪ other`.
    pub const fn union(self, other: Access) -> Access {
        Access(self.0 | other.0)
    }

    /// `self ∖ other`.
    pub const fn difference(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }

    /// Whether every mode of `other` is in `self`.
    pub const fn contains(self, other: Access) -> bool {
        other.0 & !self.0 == 0
    }

    /// Whether the sets share at least one mode.
    pub const fn intersects(self, other: Access) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (flag, c) in [(Self::READ, 'r'), (Self::WRITE, 'w'), (Self::MKNOD, 'm')] {
            if self.contains(flag) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Access(\"{self}\")")
    }
}

/// One entry of an OCI `linux.resources.devices` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    /// `true` for allow, `false` for deny.
    pub allow: bool,
    /// Device type selector.
    pub kind: DeviceKind,
    /// Major number; `None` matches any.
    pub major: Option<u32>,
    /// Minor number; `None` matches any.
    pub minor: Option<u32>,
    /// Access modes the rule is about; must not be empty.
    pub access: Access,
}

impl DeviceRule {
    /// An allow rule.
    pub const fn allow(
        kind: DeviceKind,
        major: Option<u32>,
        minor: Option<u32>,
        access: Access,
    ) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            access,
        }
    }

    /// A deny rule.
    pub const fn deny(
        kind: DeviceKind,
        major: Option<u32>,
        minor: Option<u32>,
        access: Access,
    ) -> DeviceRule {
        DeviceRule {
            allow: false,
            kind,
            major,
            minor,
            access,
        }
    }

    /// Converts an OCI rule with runc's interpretation: a missing type means
    /// `a`, a missing number (or `-1`) is a wildcard, and the access string
    /// must be present and non-empty. Types `u` and `p` are rejected.
    pub fn from_oci(rule: &LinuxDeviceCgroup) -> Result<DeviceRule, RuleError> {
        let kind = match rule.typ() {
            None | Some(LinuxDeviceType::A) => DeviceKind::All,
            Some(LinuxDeviceType::C) => DeviceKind::Char,
            Some(LinuxDeviceType::B) => DeviceKind::Block,
            Some(other) => return Err(RuleError::UnsupportedType(other.as_str().to_owned())),
        };
        let access = Access::parse(rule.access().as_deref().unwrap_or(""))?;
        if access.is_empty() {
            return Err(RuleError::EmptyAccess);
        }
        Ok(DeviceRule {
            allow: rule.allow(),
            kind,
            major: oci_number("major", rule.major())?,
            minor: oci_number("minor", rule.minor())?,
            access,
        })
    }
}

fn oci_number(field: &'static str, value: Option<i64>) -> Result<Option<u32>, RuleError> {
    match value {
        None | Some(-1) => Ok(None),
        Some(v) => u32::try_from(v)
            .map(Some)
            .map_err(|_| RuleError::NumberOutOfRange { field, value: v }),
    }
}

impl TryFrom<&LinuxDeviceCgroup> for DeviceRule {
    type Error = RuleError;

    fn try_from(rule: &LinuxDeviceCgroup) -> Result<Self, Self::Error> {
        DeviceRule::from_oci(rule)
    }
}

/// Converts a whole OCI list, reporting the index of the first bad entry.
pub fn rules_from_oci(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, DeviceError> {
    rules
        .iter()
        .enumerate()
        .map(|(index, r)| {
            DeviceRule::from_oci(r).map_err(|source| DeviceError::InvalidRule {
                index,
                rule: r.to_string(),
                source,
            })
        })
        .collect()
}

struct Num(Option<u32>);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("*"),
        }
    }
}

impl DeviceRule {
    /// The rule as cgroup v1's `devices.allow` and `devices.deny` take it ("c 1:3 rwm").
    pub fn v1_line(&self) -> String {
        format!(
            "{} {}:{} {}",
            self.kind.letter(),
            Num(self.major),
            Num(self.minor),
            self.access
        )
    }
}

impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allow { "allow" } else { "deny" };
        write!(f, "{verdict} {}", self.v1_line())
    }
}

// ---------------------------------------------------------------------------
// runc's built-in device list
// ---------------------------------------------------------------------------

/// A device runc always permits, with the node path runc associates with it
/// (rules without a path have no node created for them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultDevice {
    /// Path of the node inside the container, if runc creates one.
    pub path: Option<&'static str>,
    /// The cgroup rule.
    pub rule: DeviceRule,
}

const fn char_dev(path: Option<&'static str>, major: u32, minor: Option<u32>) -> DefaultDevice {
    DefaultDevice {
        path,
        rule: DeviceRule::allow(DeviceKind::Char, Some(major), minor, Access::RWM),
    }
}

/// runc's built-in allowed devices, in runc's order.
///
/// Source: `AllowedDevices` in `libcontainer/specconv/spec_linux.go` of runc
/// v1.1.15 (the list is identical throughout v1.1.x, and again in v1.3.x;
/// v1.2.0 briefly dropped the tun/tap entry, restored in a later 1.2 release).
/// Note that `/dev/console` (5:1) is *not* part of it.
pub const DEFAULT_DEVICES: &[DefaultDevice] = &[
    // mknod of any char or block device (the node is still unusable unless
    // another rule grants read/write).
    DefaultDevice {
        path: None,
        rule: DeviceRule::allow(DeviceKind::Char, None, None, Access::MKNOD),
    },
    DefaultDevice {
        path: None,
        rule: DeviceRule::allow(DeviceKind::Block, None, None, Access::MKNOD),
    },
    char_dev(Some("/dev/null"), 1, Some(3)),
    char_dev(Some("/dev/random"), 1, Some(8)),
    char_dev(Some("/dev/full"), 1, Some(7)),
    char_dev(Some("/dev/tty"), 5, Some(0)),
    char_dev(Some("/dev/zero"), 1, Some(5)),
    char_dev(Some("/dev/urandom"), 1, Some(9)),
    // /dev/pts/*
    char_dev(None, 136, None),
    // /dev/ptmx
    char_dev(None, 5, Some(2)),
    // /dev/net/tun
    char_dev(None, 10, Some(200)),
];

/// The cgroup rules of [`DEFAULT_DEVICES`], in order.
pub const DEFAULT_RULES: [DeviceRule; DEFAULT_DEVICES.len()] = {
    let mut out = [DEFAULT_DEVICES[0].rule; DEFAULT_DEVICES.len()];
    let mut i = 1;
    while i < out.len() {
        out[i] = DEFAULT_DEVICES[i].rule;
        i += 1;
    }
    out
};

/// [`DEFAULT_RULES`] as a vector.
pub fn default_rules() -> Vec<DeviceRule> {
    DEFAULT_RULES.to_vec()
}

/// Builds the list runc would compile for a container: the user's rules
/// followed by the default rules. Like runc, a default entry is left out when
/// the spec's `linux.devices` lists a node at the same path
/// (`spec_device_paths`); entries without a path are always added.
pub fn with_defaults(user_rules: &[DeviceRule], spec_device_paths: &[&str]) -> Vec<DeviceRule> {
    let mut out = user_rules.to_vec();
    out.extend(
        DEFAULT_DEVICES
            .iter()
            .filter(|d| d.path.is_none_or(|p| !spec_device_paths.contains(&p)))
            .map(|d| d.rule),
    );
    out
}

// ---------------------------------------------------------------------------
// Normalised policy
// ---------------------------------------------------------------------------

/// A `(type, major, minor)` triple with access modes that flips the default
/// verdict of a [`DevicePolicy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    /// Device type.
    pub node: NodeType,
    /// Major number; `None` matches any.
    pub major: Option<u32>,
    /// Minor number; `None` matches any.
    pub minor: Option<u32>,
    /// Modes covered; never empty.
    pub access: Access,
}

impl Exception {
    /// Whether a request is covered by this exception.
    pub fn covers(&self, node: NodeType, major: u32, minor: u32, access: Access) -> bool {
        self.node == node
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && self.access.contains(access)
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}:{} {}",
            self.node.letter(),
            Num(self.major),
            Num(self.minor),
            self.access
        )
    }
}

type Key = (NodeType, Option<u32>, Option<u32>);

/// The state reached by replaying a rule list with cgroup v1 semantics (see
/// the module documentation): a default verdict plus exceptions that all
/// carry the opposite verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicy {
    default_allow: bool,
    exceptions: Vec<Exception>,
}

impl DevicePolicy {
    /// Replays `rules` in order. Fails on an invalid rule or on a rule that
    /// would need to punch a hole in a wildcard exception.
    pub fn from_rules(rules: &[DeviceRule]) -> Result<DevicePolicy, DeviceError> {
        let mut default_allow = false;
        let mut table: BTreeMap<Key, Access> = BTreeMap::new();

        for (index, rule) in rules.iter().enumerate() {
            if rule.access.is_empty() {
                return Err(DeviceError::InvalidRule {
                    index,
                    rule: rule.to_string(),
                    source: RuleError::EmptyAccess,
                });
            }
            let node = match rule.kind {
                DeviceKind::All => {
                    default_allow = rule.allow;
                    table.clear();
                    continue;
                }
                DeviceKind::Char => NodeType::Char,
                DeviceKind::Block => NodeType::Block,
            };
            let key = (node, rule.major, rule.minor);

            if rule.allow != default_allow {
                let entry = table.entry(key).or_insert(Access::NONE);
                *entry = entry.union(rule.access);
                continue;
            }

            // The rule agrees with the default: it can only take modes away
            // from the exception with the identical key. Refuse if a broader
            // exception would keep granting (or denying) those modes anyway.
            for broader in [
                (node, None, rule.minor),
                (node, rule.major, None),
                (node, None, None),
            ] {
                if broader == key {
                    continue;
                }
                if let Some(&held) = table.get(&broader) {
                    if held.intersects(rule.access) {
                        return Err(DeviceError::WildcardHole {
                            index,
                            rule: rule.to_string(),
                            wildcard: Exception {
                                node: broader.0,
                                major: broader.1,
                                minor: broader.2,
                                access: held,
                            }
                            .to_string(),
                        });
                    }
                }
            }
            if let Some(held) = table.get_mut(&key) {
                *held = held.difference(rule.access);
                if held.is_empty() {
                    table.remove(&key);
                }
            }
        }

        let exceptions = table
            .into_iter()
            .map(|((node, major, minor), access)| Exception {
                node,
                major,
                minor,
                access,
            })
            .collect();
        Ok(DevicePolicy {
            default_allow,
            exceptions,
        })
    }

    /// Verdict for devices no exception covers.
    pub fn default_allow(&self) -> bool {
        self.default_allow
    }

    /// The exceptions, sorted by `(type, major, minor)`.
    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// Whether the policy grants `access` to the device `node major:minor`.
    /// This is the verdict the generated program returns.
    pub fn is_allowed(&self, node: NodeType, major: u32, minor: u32, access: Access) -> bool {
        let covered = self
            .exceptions
            .iter()
            .any(|e| e.covers(node, major, minor, access));
        covered != self.default_allow
    }

    /// Compiles the policy into a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
    pub fn program(&self) -> Vec<Insn> {
        compile(self)
    }
}

/// Shorthand for `DevicePolicy::from_rules(rules)?.program()`.
pub fn build_program(rules: &[DeviceRule]) -> Result<Vec<Insn>, DeviceError> {
    Ok(DevicePolicy::from_rules(rules)?.program())
}

// ---------------------------------------------------------------------------
// BPF instructions
// ---------------------------------------------------------------------------

// Values from include/uapi/linux/bpf.h.
const BPF_DEVCG_ACC_MKNOD: u32 = 1;
const BPF_DEVCG_ACC_READ: u32 = 2;
const BPF_DEVCG_ACC_WRITE: u32 = 4;
const BPF_DEVCG_DEV_BLOCK: u32 = 1;
const BPF_DEVCG_DEV_CHAR: u32 = 2;

/// The opcodes this module emits (classic eBPF encoding: class | size/op |
/// source). Only 32-bit ALU operations are used, which zero the upper half
/// of the destination register.
pub mod opcode {
    const CLASS_LDX: u8 = 0x01;
    const CLASS_ALU32: u8 = 0x04;
    const CLASS_JMP: u8 = 0x05;
    const SIZE_W: u8 = 0x00;
    const MODE_MEM: u8 = 0x60;
    const SRC_IMM: u8 = 0x00;
    const SRC_REG: u8 = 0x08;
    const OP_AND: u8 = 0x50;
    const OP_RSH: u8 = 0x70;
    const OP_MOV: u8 = 0xb0;
    const OP_JNE: u8 = 0x50;
    const OP_EXIT: u8 = 0x90;

    /// `dst = *(u32 *)(src + off)`
    pub const LDX_W: u8 = CLASS_LDX | MODE_MEM | SIZE_W;
    /// `wdst &= imm`
    pub const AND32_IMM: u8 = CLASS_ALU32 | OP_AND | SRC_IMM;
    /// `wdst >>= imm`
    pub const RSH32_IMM: u8 = CLASS_ALU32 | OP_RSH | SRC_IMM;
    /// `wdst = imm` (upper 32 bits cleared)
    pub const MOV32_IMM: u8 = CLASS_ALU32 | OP_MOV | SRC_IMM;
    /// `wdst = wsrc` (upper 32 bits cleared)
    pub const MOV32_REG: u8 = CLASS_ALU32 | OP_MOV | SRC_REG;
    /// `if dst != (s64)imm goto +off`
    pub const JNE_IMM: u8 = CLASS_JMP | OP_JNE | SRC_IMM;
    /// `if dst != src goto +off`
    pub const JNE_REG: u8 = CLASS_JMP | OP_JNE | SRC_REG;
    /// `return r0`
    pub const EXIT: u8 = CLASS_JMP | OP_EXIT;
}

/// Registers used by the generated program.
mod reg {
    /// Return value.
    pub const R0: u8 = 0;
    /// Context pointer on entry.
    pub const CTX: u8 = 1;
    /// Device type (`access_type & 0xffff`).
    pub const TYPE: u8 = 2;
    /// Requested access (`access_type >> 16`).
    pub const ACCESS: u8 = 3;
    /// Major number.
    pub const MAJOR: u8 = 4;
    /// Minor number.
    pub const MINOR: u8 = 5;
    /// Scratch.
    pub const TMP: u8 = 6;
}

/// One 8-byte eBPF instruction, laid out like the kernel's `struct bpf_insn`.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

impl Insn {
    /// Builds an instruction. Register numbers above 10 are truncated to 4 bits.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // `struct bpf_insn` declares `dst_reg:4, src_reg:4`; the bit-field
        // order follows the target's byte order.
        #[cfg(target_endian = "little")]
        let regs = (src & 0x0f) << 4 | (dst & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst & 0x0f) << 4 | (src & 0x0f);
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// Opcode byte.
    pub const fn code(&self) -> u8 {
        self.code
    }

    /// Destination register.
    pub const fn dst(&self) -> u8 {
        #[cfg(target_endian = "little")]
        let r = self.regs & 0x0f;
        #[cfg(target_endian = "big")]
        let r = self.regs >> 4;
        r
    }

    /// Source register.
    pub const fn src(&self) -> u8 {
        #[cfg(target_endian = "little")]
        let r = self.regs >> 4;
        #[cfg(target_endian = "big")]
        let r = self.regs & 0x0f;
        r
    }

    /// Jump / memory offset.
    pub const fn off(&self) -> i16 {
        self.off
    }

    /// Immediate.
    pub const fn imm(&self) -> i32 {
        self.imm
    }

    /// The bytes the kernel expects for this instruction on this host.
    pub fn to_bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = self.regs;
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.code,
            self.dst(),
            self.src(),
            self.off,
            self.imm
        )
    }
}

/// A conditional "skip to the next block" jump whose offset is not known yet.
const PENDING: i16 = i16::MIN;

/// Emits the comparison of `reg` against a u32 value. Values that do not fit
/// an `i32` immediate (which the CPU sign-extends to 64 bits) are first
/// loaded into the scratch register with a zero-extending 32-bit move.
fn emit_ne_u32(block: &mut Vec<Insn>, reg: u8, value: u32) {
    match i32::try_from(value) {
        Ok(imm) => block.push(Insn::new(opcode::JNE_IMM, reg, 0, PENDING, imm)),
        Err(_) => {
            block.push(Insn::new(
                opcode::MOV32_IMM,
                reg::TMP,
                0,
                0,
                i32::from_ne_bytes(value.to_ne_bytes()),
            ));
            block.push(Insn::new(opcode::JNE_REG, reg, reg::TMP, PENDING, 0));
        }
    }
}

fn compile(policy: &DevicePolicy) -> Vec<Insn> {
    let verdict = |allow: bool| Insn::new(opcode::MOV32_IMM, reg::R0, 0, 0, i32::from(allow));
    let exit = Insn::new(opcode::EXIT, 0, 0, 0, 0);
    let mut prog = Vec::new();

    if !policy.exceptions.is_empty() {
        // Unpack struct bpf_cgroup_dev_ctx { u32 access_type, major, minor; }.
        prog.extend([
            Insn::new(opcode::LDX_W, reg::TYPE, reg::CTX, 0, 0),
            Insn::new(opcode::MOV32_REG, reg::ACCESS, reg::TYPE, 0, 0),
            Insn::new(opcode::AND32_IMM, reg::TYPE, 0, 0, 0xffff),
            Insn::new(opcode::RSH32_IMM, reg::ACCESS, 0, 0, 16),
            Insn::new(opcode::LDX_W, reg::MAJOR, reg::CTX, 4, 0),
            Insn::new(opcode::LDX_W, reg::MINOR, reg::CTX, 8, 0),
        ]);
    }

    // One block per exception: a chain of "if mismatch, skip this block"
    // tests followed by "return the exception's verdict". All exceptions
    // share one verdict, so their order does not matter.
    let mut block = Vec::new();
    for exc in &policy.exceptions {
        block.clear();
        block.push(Insn::new(
            opcode::JNE_IMM,
            reg::TYPE,
            0,
            PENDING,
            exc.node.bpf_value() as i32,
        ));
        if exc.access != Access::RWM {
            // Mismatch if any requested mode lies outside the exception.
            let outside = Access::RWM.difference(exc.access).bits();
            block.push(Insn::new(opcode::MOV32_REG, reg::TMP, reg::ACCESS, 0, 0));
            block.push(Insn::new(
                opcode::AND32_IMM,
                reg::TMP,
                0,
                0,
                i32::from(outside),
            ));
            block.push(Insn::new(opcode::JNE_IMM, reg::TMP, 0, PENDING, 0));
        }
        if let Some(major) = exc.major {
            emit_ne_u32(&mut block, reg::MAJOR, major);
        }
        if let Some(minor) = exc.minor {
            emit_ne_u32(&mut block, reg::MINOR, minor);
        }
        block.push(verdict(!policy.default_allow));
        block.push(exit);

        // Resolve the skips: the target is the first instruction after the
        // block, and offsets count from the instruction following the jump.
        // Blocks are at most 12 instructions long, so the cast cannot wrap.
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.off == PENDING {
                insn.off = (len - i - 1) as i16;
            }
        }
        prog.extend_from_slice(&block);
    }

    prog.push(verdict(policy.default_allow));
    prog.push(exit);
    prog
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a single rule is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Only `a`, `b` and `c` are meaningful to the device cgroup.
    #[error("device type {0:?} cannot be used in a device cgroup rule (expected a, b or c)")]
    UnsupportedType(String),
    /// The access string was missing or empty.
    #[error("access must be a non-empty combination of r, w and m")]
    EmptyAccess,
    /// The access string had other characters.
    #[error("access {0:?} contains characters other than r, w and m")]
    InvalidAccess(String),
    /// A major/minor number outside `0..=u32::MAX` (and not `-1`).
    #[error("{field} number {value} is out of range")]
    NumberOutOfRange {
        /// `"major"` or `"minor"`.
        field: &'static str,
        /// The offending value.
        value: i64,
    },
}

/// Errors of this module. Every error raised while working on a cgroup
/// names that cgroup's directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A rule is malformed.
    #[error("device rule #{index} ({rule}) is invalid: {source}")]
    InvalidRule {
        /// Position in the rule list.
        index: usize,
        /// The rule as text.
        rule: String,
        /// What is wrong with it.
        #[source]
        source: RuleError,
    },
    /// A rule tries to carve an exception out of a broader wildcard rule,
    /// which the cgroup v1 model cannot express.
    #[error(
        "device rule #{index} ({rule}) cannot take effect: the broader rule \
         '{wildcard}' would still apply to the same devices (cgroup device \
         rules cannot punch holes in wildcard rules)"
    )]
    WildcardHole {
        /// Position in the rule list.
        index: usize,
        /// The rule as text.
        rule: String,
        /// The wildcard exception in force at that point.
        wildcard: String,
    },
    /// The cgroup directory could not be opened.
    #[error("cannot open cgroup directory {}: {source}", .path.display())]
    OpenCgroup {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The path is not a directory of a cgroup v2 file system.
    #[error("{} is not a cgroup v2 directory (file system magic {fs_magic:#x})", .path.display())]
    NotCgroup2 {
        /// The directory.
        path: PathBuf,
        /// `statfs.f_type` found there.
        fs_magic: i64,
    },
    /// `BPF_PROG_LOAD` failed; `verifier_log` holds the kernel's explanation
    /// when it gave one.
    #[error(
        "cannot load the device filter program for {}: {source}{}",
        .path.display(),
        log_suffix(.verifier_log)
    )]
    Load {
        /// The cgroup the program was meant for.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
        /// Verifier output (may be empty).
        verifier_log: String,
    },
    /// `BPF_PROG_QUERY` failed.
    #[error("cannot list the device programs attached to {}: {source}", .path.display())]
    Query {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `BPF_OBJ_GET_INFO_BY_FD` or `BPF_PROG_GET_FD_BY_ID` failed.
    #[error("cannot inspect device program {id} of {}: {source}", .path.display())]
    Program {
        /// The cgroup directory.
        path: PathBuf,
        /// Program id (0 if not known yet).
        id: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_ATTACH` failed; the previous programs are untouched.
    #[error("cannot attach the device filter program to {}: {source}", .path.display())]
    Attach {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_DETACH` of an old program failed. The new program is
    /// attached, so access is at most what the new rules allow.
    #[error("cannot detach old device program {id} from {}: {source}", .path.display())]
    Detach {
        /// The cgroup directory.
        path: PathBuf,
        /// The program that stayed attached.
        id: u32,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn log_suffix(log: &str) -> String {
    let log = log.trim_end();
    if log.is_empty() {
        String::new()
    } else {
        format!("\nverifier log:\n{log}")
    }
}

// ---------------------------------------------------------------------------
// bpf(2)
// ---------------------------------------------------------------------------

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;
const BPF_PROG_QUERY: libc::c_int = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
const BPF_F_REPLACE: u32 = 1 << 2;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// License declared to the kernel. It only matters for GPL-only helpers,
/// and the program calls no helper at all.
const LICENSE: &CStr = c"Apache-2.0";
/// Name shown by `bpftool prog` (at most 15 bytes plus NUL).
const PROG_NAME: &[u8] = b"berth_devices";
const VERIFIER_LOG_SIZE: usize = 256 * 1024;

// The bpf_attr variants below list only the fields used, with explicit
// padding: the kernel rejects non-zero bytes past the fields it knows.

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// Leading part of `struct bpf_prog_info`.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
}

const _: () = {
    assert!(std::mem::size_of::<ProgLoadAttr>() == 64);
    assert!(std::mem::size_of::<ProgAttachAttr>() == 20);
    assert!(std::mem::size_of::<ProgQueryAttr>() == 32);
    assert!(std::mem::size_of::<GetFdByIdAttr>() == 12);
    assert!(std::mem::size_of::<InfoByFdAttr>() == 16);
    assert!(std::mem::size_of::<ProgInfoHead>() == 16);
};

/// Calls bpf(2) with `attr` as the attribute block.
fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed #[repr(C)] value without
    // implicit padding whose layout matches the kernel's `union bpf_attr`
    // prefix for `cmd`; the size passed is exactly its size. Pointers stored
    // inside it are kept alive by the callers for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // File descriptors are never negative.
    fd.as_raw_fd() as u32
}

fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let raw = RawFd::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned `raw` as a new descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn prog_load(insns: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let mut name = [0u8; 16];
    name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let insn_cnt =
        u32::try_from(insns.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    if let Some(buf) = log {
        attr.log_level = 1;
        attr.log_size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        attr.log_buf = buf.as_mut_ptr() as u64;
    }
    owned_fd(sys_bpf(BPF_PROG_LOAD, &mut attr)?)
}

/// Loads `insns`; on failure, loads again with a verifier log to explain why.
fn load_program(insns: &[Insn], path: &Path) -> Result<OwnedFd, DeviceError> {
    let first = match prog_load(insns, None) {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut log = vec![0u8; VERIFIER_LOG_SIZE];
    if let Ok(fd) = prog_load(insns, Some(&mut log)) {
        return Ok(fd);
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let mut verifier_log = String::from_utf8_lossy(&log[..end]).into_owned();
    if first.raw_os_error() == Some(libc::EPERM) && verifier_log.is_empty() {
        verifier_log = "loading BPF programs needs CAP_BPF/CAP_SYS_ADMIN; on kernels \
                        older than 5.11 RLIMIT_MEMLOCK may also be too low"
            .to_owned();
    }
    Err(DeviceError::Load {
        path: path.to_owned(),
        source: first,
        verifier_log,
    })
}

fn program_id(prog: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = ProgInfoHead::default();
    let mut attr = InfoByFdAttr {
        bpf_fd: fd_u32(prog),
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: &mut info as *mut ProgInfoHead as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info.id)
}

fn program_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..Default::default()
    };
    owned_fd(sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

fn query_programs(cgroup: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    // 64 is the kernel's per-cgroup limit for one attach type, so a second
    // round is only needed if that limit ever grows.
    let mut capacity = 64usize;
    for _ in 0..8 {
        let mut ids = vec![0u32; capacity];
        let mut attr = ProgQueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: capacity as u32,
            ..Default::default()
        };
        match sys_bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate((attr.prog_cnt as usize).min(capacity));
                return Ok(ids);
            }
            // The kernel reports the real count alongside ENOSPC.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                capacity = (attr.prog_cnt as usize).max(capacity * 2);
            }
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::from_raw_os_error(libc::ENOSPC))
}

fn prog_attach(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    replace: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    if let Some(old) = replace {
        attr.attach_flags |= BPF_F_REPLACE;
        attr.replace_bpf_fd = fd_u32(old);
    }
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

fn prog_detach(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = ProgAttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

fn errno_is(e: &io::Error, codes: &[libc::c_int]) -> bool {
    e.raw_os_error().is_some_and(|c| codes.contains(&c))
}

// ---------------------------------------------------------------------------
// Applying to a cgroup
// ---------------------------------------------------------------------------

/// Outcome of [`apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedFilter {
    /// Kernel id of the program now attached.
    pub program_id: u32,
    /// Ids of the previously attached programs that were removed.
    pub detached: Vec<u32>,
    /// Ids of attached programs this process may not open (typically an
    /// LSM policy) and therefore left in place. They can only restrict
    /// access further. runc ignores them the same way.
    pub left_attached: Vec<u32>,
}

fn open_cgroup(path: &Path) -> Result<File, DeviceError> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| DeviceError::OpenCgroup {
            path: path.to_owned(),
            source,
        })?;
    // SAFETY: all-zero is a valid `statfs`, which fstatfs fills in.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `dir` is an open descriptor and `st` a writable statfs.
    if unsafe { libc::fstatfs(dir.as_raw_fd(), &mut st) } != 0 {
        return Err(DeviceError::OpenCgroup {
            path: path.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs per target
    let magic = st.f_type as i64;
    if magic != CGROUP2_SUPER_MAGIC {
        return Err(DeviceError::NotCgroup2 {
            path: path.to_owned(),
            fs_magic: magic,
        });
    }
    Ok(dir)
}

/// Ids of the device programs attached directly to the cgroup directory
/// `cgroup` (not those inherited from ancestors).
pub fn attached_programs(cgroup: &Path) -> Result<Vec<u32>, DeviceError> {
    let dir = open_cgroup(cgroup)?;
    query_programs(dir.as_fd()).map_err(|source| DeviceError::Query {
        path: cgroup.to_owned(),
        source,
    })
}

/// Replays `rules` (see the module documentation) and installs the result
/// on the cgroup v2 directory `cgroup`, replacing the device programs
/// attached there. Equivalent to
/// `apply_policy(cgroup, &DevicePolicy::from_rules(rules)?)`.
///
/// Needs CAP_SYS_ADMIN (`BPF_PROG_GET_FD_BY_ID`, used to open the old
/// programs, requires it). Callers must serialise updates of the same
/// cgroup; two concurrent calls may leave both new programs attached.
pub fn apply(cgroup: &Path, rules: &[DeviceRule]) -> Result<AppliedFilter, DeviceError> {
    let policy = DevicePolicy::from_rules(rules)?;
    apply_policy(cgroup, &policy)
}

/// Installs an already normalised policy; see [`apply`].
pub fn apply_policy(cgroup: &Path, policy: &DevicePolicy) -> Result<AppliedFilter, DeviceError> {
    let query_err = |source| DeviceError::Query {
        path: cgroup.to_owned(),
        source,
    };
    let dir = open_cgroup(cgroup)?;
    let prog = load_program(&policy.program(), cgroup)?;
    let program_id = program_id(prog.as_fd()).map_err(|source| DeviceError::Program {
        path: cgroup.to_owned(),
        id: 0,
        source,
    })?;

    // Take handles on the current programs before attaching, so the new
    // one cannot end up in the list of programs to remove.
    let mut old: Vec<(u32, OwnedFd)> = Vec::new();
    let mut left_attached = Vec::new();
    for id in query_programs(dir.as_fd()).map_err(query_err)? {
        match program_fd_by_id(id) {
            Ok(fd) => old.push((id, fd)),
            // Detached and freed since the query: nothing to do.
            Err(e) if errno_is(&e, &[libc::ENOENT]) => {}
            Err(e) if errno_is(&e, &[libc::EPERM, libc::EACCES]) => left_attached.push(id),
            Err(source) => {
                return Err(DeviceError::Program {
                    path: cgroup.to_owned(),
                    id,
                    source,
                })
            }
        }
    }

    let attach_err = |source| DeviceError::Attach {
        path: cgroup.to_owned(),
        source,
    };

    // Single predecessor: swap it in place in one kernel operation.
    if let [(old_id, old_fd)] = old.as_slice() {
        match prog_attach(dir.as_fd(), prog.as_fd(), Some(old_fd.as_fd())) {
            Ok(()) => {
                return Ok(AppliedFilter {
                    program_id,
                    detached: vec![*old_id],
                    left_attached,
                })
            }
            // EINVAL: kernel without BPF_F_REPLACE (< 5.6). ENOENT: the old
            // program went away meanwhile. Either way, attach then detach.
            Err(e) if errno_is(&e, &[libc::EINVAL, libc::ENOENT]) => {}
            Err(e) => return Err(attach_err(e)),
        }
    }

    prog_attach(dir.as_fd(), prog.as_fd(), None).map_err(attach_err)?;
    let mut detached = Vec::with_capacity(old.len());
    for (id, fd) in &old {
        match prog_detach(dir.as_fd(), fd.as_fd()) {
            Ok(()) => detached.push(*id),
            Err(e) if errno_is(&e, &[libc::ENOENT]) => {}
            Err(source) => {
                return Err(DeviceError::Detach {
                    path: cgroup.to_owned(),
                    id: *id,
                    source,
                })
            }
        }
    }
    Ok(AppliedFilter {
        program_id,
        detached,
        left_attached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    const C: DeviceKind = DeviceKind::Char;
    const B: DeviceKind = DeviceKind::Block;
    const A: DeviceKind = DeviceKind::All;

    fn acc(s: &str) -> Access {
        Access::parse(s).expect("test access string")
    }

    fn allow(kind: DeviceKind, major: Option<u32>, minor: Option<u32>, a: &str) -> DeviceRule {
        DeviceRule::allow(kind, major, minor, acc(a))
    }

    fn deny(kind: DeviceKind, major: Option<u32>, minor: Option<u32>, a: &str) -> DeviceRule {
        DeviceRule::deny(kind, major, minor, acc(a))
    }

    // -- a tiny eBPF interpreter for exactly the opcodes the generator uses --

    /// Runs `prog` on a `bpf_cgroup_dev_ctx`, checking what the verifier
    /// would insist on: only known opcodes, forward jumps inside the
    /// program, aligned 4-byte context loads, no use of unset registers, and
    /// a return value of 0 or 1.
    fn interpret(prog: &[Insn], node: NodeType, major: u32, minor: u32, access: u32) -> bool {
        let ctx = [(access << 16) | node.bpf_value(), major, minor];
        let mut regs: [Option<u64>; 11] = [None; 11];
        let mut is_ctx = [false; 11];
        regs[1] = Some(0);
        is_ctx[1] = true;
        let mut pc = 0usize;
        loop {
            let insn = *prog
                .get(pc)
                .unwrap_or_else(|| panic!("pc {pc} fell off a {}-insn program", prog.len()));
            let (d, s) = (usize::from(insn.dst()), usize::from(insn.src()));
            assert!(d <= 10 && s <= 10, "bad register in {insn:?}");
            let read = |regs: &[Option<u64>; 11], r: usize| {
                regs[r].unwrap_or_else(|| panic!("pc {pc}: r{r} read before written"))
            };
            let mut next = pc + 1;
            let mut jump = |taken: bool| {
                assert!(insn.off() >= 0, "pc {pc}: backward jump");
                if taken {
                    next = pc + 1 + insn.off() as usize;
                }
                assert!(next < prog.len(), "pc {pc}: jump out of program");
            };
            match insn.code() {
                opcode::LDX_W => {
                    assert!(is_ctx[s], "pc {pc}: load through non-context r{s}");
                    let off = insn.off();
                    assert!(
                        (0..=8).contains(&off) && off % 4 == 0,
                        "pc {pc}: ctx offset {off}"
                    );
                    regs[d] = Some(u64::from(ctx[off as usize / 4]));
                    is_ctx[d] = false;
                }
                opcode::MOV32_IMM => {
                    regs[d] = Some(u64::from(insn.imm() as u32));
                    is_ctx[d] = false;
                }
                opcode::MOV32_REG => {
                    assert!(!is_ctx[s], "pc {pc}: pointer arithmetic");
                    regs[d] = Some(u64::from(read(&regs, s) as u32));
                    is_ctx[d] = false;
                }
                opcode::AND32_IMM => {
                    assert!(!is_ctx[d]);
                    regs[d] = Some(u64::from(read(&regs, d) as u32 & insn.imm() as u32));
                }
                opcode::RSH32_IMM => {
                    assert!(!is_ctx[d] && (0..32).contains(&insn.imm()));
                    regs[d] = Some(u64::from((read(&regs, d) as u32) >> insn.imm()));
                }
                opcode::JNE_IMM => {
                    assert!(!is_ctx[d]);
                    let v = read(&regs, d);
                    jump(v != insn.imm() as i64 as u64);
                }
                opcode::JNE_REG => {
                    assert!(!is_ctx[d] && !is_ctx[s]);
                    let (a, b) = (read(&regs, d), read(&regs, s));
                    jump(a != b);
                }
                opcode::EXIT => {
                    let r0 = read(&regs, 0);
                    assert!(r0 <= 1, "return value {r0}");
                    return r0 == 1;
                }
                other => panic!("pc {pc}: opcode {other:#04x} not expected"),
            }
            pc = next;
        }
    }

    // -- an independent model of the rule semantics --

    /// Replays the rules for one device only. Only exceptions whose key can
    /// match `major:minor` matter, and there are exactly four such keys.
    /// Assumes the list is valid (no wildcard holes).
    fn reference(
        rules: &[DeviceRule],
        node: NodeType,
        major: u32,
        minor: u32,
        req: Access,
    ) -> bool {
        let keys = [
            (Some(major), Some(minor)),
            (Some(major), None),
            (None, Some(minor)),
            (None, None),
        ];
        let mut default_allow = false;
        let mut held = [Access::NONE; 4];
        for r in rules {
            let rn = match r.kind {
                DeviceKind::All => {
                    default_allow = r.allow;
                    held = [Access::NONE; 4];
                    continue;
                }
                DeviceKind::Char => NodeType::Char,
                DeviceKind::Block => NodeType::Block,
            };
            if rn != node {
                continue;
            }
            if let Some(i) = keys.iter().position(|k| *k == (r.major, r.minor)) {
                held[i] = if r.allow != default_allow {
                    held[i].union(r.access)
                } else {
                    held[i].difference(r.access)
                };
            }
        }
        let covered = held.iter().any(|h| !h.is_empty() && h.contains(req));
        covered != default_allow
    }

    /// Checks policy, generated program and reference agree, and returns
    /// the verdict.
    fn verdict(rules: &[DeviceRule], node: NodeType, major: u32, minor: u32, req: &str) -> bool {
        let req = acc(req);
        let policy = DevicePolicy::from_rules(rules).expect("valid rules");
        let by_policy = policy.is_allowed(node, major, minor, req);
        let by_prog = interpret(&policy.program(), node, major, minor, u32::from(req.bits()));
        let by_ref = reference(rules, node, major, minor, req);
        assert_eq!(
            by_policy, by_prog,
            "policy vs program for {node:?} {major}:{minor} {req}"
        );
        assert_eq!(
            by_policy, by_ref,
            "policy vs reference for {node:?} {major}:{minor} {req}"
        );
        by_policy
    }

    use NodeType::{Block as NB, Char as NC};

    #[test]
    fn encodes_single_rule_exactly() {
        let prog = build_program(&[allow(C, Some(1), Some(3), "rwm")]).unwrap();
        let bytes: Vec<[u8; 8]> = prog.iter().map(|i| i.to_bytes()).collect();
        #[cfg(target_endian = "little")]
        let expected: Vec<[u8; 8]> = vec![
            [0x61, 0x12, 0, 0, 0, 0, 0, 0],       // r2 = *(u32 *)(r1 + 0)
            [0xbc, 0x23, 0, 0, 0, 0, 0, 0],       // w3 = w2
            [0x54, 0x02, 0, 0, 0xff, 0xff, 0, 0], // w2 &= 0xffff
            [0x74, 0x03, 0, 0, 16, 0, 0, 0],      // w3 >>= 16
            [0x61, 0x14, 4, 0, 0, 0, 0, 0],       // r4 = *(u32 *)(r1 + 4)
            [0x61, 0x15, 8, 0, 0, 0, 0, 0],       // r5 = *(u32 *)(r1 + 8)
            [0x55, 0x02, 4, 0, 2, 0, 0, 0],       // if r2 != CHAR goto +4
            [0x55, 0x04, 3, 0, 1, 0, 0, 0],       // if r4 != 1 goto +3
            [0x55, 0x05, 2, 0, 3, 0, 0, 0],       // if r5 != 3 goto +2
            [0xb4, 0x00, 0, 0, 1, 0, 0, 0],       // w0 = 1
            [0x95, 0x00, 0, 0, 0, 0, 0, 0],       // exit
            [0xb4, 0x00, 0, 0, 0, 0, 0, 0],       // w0 = 0
            [0x95, 0x00, 0, 0, 0, 0, 0, 0],       // exit
        ];
        #[cfg(target_endian = "little")]
        assert_eq!(bytes, expected);
        assert_eq!(bytes.len(), 13);
    }

    #[test]
    fn encodes_access_mask_and_large_numbers() {
        // Default-allow policy with one deny exception "b 3000000000:* r".
        let rules = [
            allow(A, None, None, "rwm"),
            deny(B, Some(3_000_000_000), None, "r"),
        ];
        let prog = build_program(&rules).unwrap();
        let tail: Vec<(u8, u8, u8, i16, i32)> = prog[6..]
            .iter()
            .map(|i| (i.code(), i.dst(), i.src(), i.off(), i.imm()))
            .collect();
        assert_eq!(
            tail,
            vec![
                (opcode::JNE_IMM, 2, 0, 7, 1),       // not a block device
                (opcode::MOV32_REG, 6, 3, 0, 0),     // w6 = access
                (opcode::AND32_IMM, 6, 0, 0, 0b101), // keep w|m
                (opcode::JNE_IMM, 6, 0, 4, 0),       // asks for more than r
                (opcode::MOV32_IMM, 6, 0, 0, 3_000_000_000u32 as i32), // zero-extended
                (opcode::JNE_REG, 4, 6, 2, 0),       // major differs
                (opcode::MOV32_IMM, 0, 0, 0, 0),     // deny
                (opcode::EXIT, 0, 0, 0, 0),
                (opcode::MOV32_IMM, 0, 0, 0, 1), // default allow
                (opcode::EXIT, 0, 0, 0, 0),
            ]
        );
        assert!(!verdict(&rules, NB, 3_000_000_000, 7, "r"));
        assert!(verdict(&rules, NB, 3_000_000_000, 7, "w"));
        // Same low 31 bits but not the same number: must not match.
        assert!(verdict(&rules, NB, 3_000_000_000 - (1 << 31), 7, "r"));
    }

    #[test]
    fn empty_and_allow_all_programs_are_constant() {
        let deny_all = build_program(&[]).unwrap();
        assert_eq!(deny_all.len(), 2);
        assert!(!interpret(&deny_all, NC, 1, 3, 2));
        let allow_all = build_program(&[allow(A, None, None, "rwm")]).unwrap();
        assert_eq!(allow_all.len(), 2);
        assert!(interpret(&allow_all, NB, 8, 0, 7));
        // A later deny-all resets an allow-all.
        let rules = [allow(A, None, None, "rwm"), deny(A, None, None, "rwm")];
        assert!(!verdict(&rules, NC, 1, 3, "r"));
    }

    #[test]
    fn docker_style_allowlist() {
        let rules = [
            deny(A, None, None, "rwm"),
            allow(C, Some(1), Some(3), "rwm"),
        ];
        assert!(verdict(&rules, NC, 1, 3, "rw"));
        assert!(verdict(&rules, NC, 1, 3, "m"));
        assert!(!verdict(&rules, NC, 1, 5, "r"));
        assert!(!verdict(&rules, NB, 1, 3, "r"), "type must match");
        assert!(!verdict(&rules, NC, 3, 1, "r"));
    }

    #[test]
    fn blocklist_mode() {
        let rules = [
            allow(A, None, None, "rwm"),
            deny(C, Some(1), Some(5), "rwm"),
        ];
        assert!(!verdict(&rules, NC, 1, 5, "r"));
        assert!(verdict(&rules, NC, 1, 3, "rw"));
        assert!(verdict(&rules, NB, 1, 5, "r"));
    }

    #[test]
    fn deny_all_after_allows_resets() {
        let rules = [
            allow(C, Some(1), Some(3), "rwm"),
            deny(A, None, None, "rwm"),
        ];
        assert!(!verdict(&rules, NC, 1, 3, "r"));
        assert!(DevicePolicy::from_rules(&rules)
            .unwrap()
            .exceptions()
            .is_empty());
    }

    #[test]
    fn later_rule_on_same_key_overrides_per_mode() {
        let rules = [
            allow(C, Some(1), Some(3), "rwm"),
            deny(C, Some(1), Some(3), "w"),
        ];
        assert!(verdict(&rules, NC, 1, 3, "r"));
        assert!(verdict(&rules, NC, 1, 3, "m"));
        assert!(!verdict(&rules, NC, 1, 3, "w"));
        assert!(!verdict(&rules, NC, 1, 3, "rw"));
        // ...and a later allow gives it back.
        let mut again = rules.to_vec();
        again.push(allow(C, Some(1), Some(3), "w"));
        assert!(verdict(&again, NC, 1, 3, "rw"));
    }

    #[test]
    fn modes_merge_only_within_one_key() {
        let same_key = [
            allow(C, Some(1), Some(3), "r"),
            allow(C, Some(1), Some(3), "w"),
        ];
        assert!(verdict(&same_key, NC, 1, 3, "rw"));
        let split = [
            allow(C, Some(1), Some(3), "r"),
            allow(C, Some(1), None, "w"),
        ];
        assert!(verdict(&split, NC, 1, 3, "r"));
        assert!(verdict(&split, NC, 1, 3, "w"));
        assert!(
            !verdict(&split, NC, 1, 3, "rw"),
            "cgroup v1 never combines exceptions"
        );
        assert!(verdict(&split, NC, 1, 9, "w"));
        assert!(!verdict(&split, NC, 1, 9, "r"));
    }

    #[test]
    fn broader_deny_does_not_revoke_narrower_allow() {
        // runc / cgroup v1 behaviour: the deny only edits the "c 1:*" entry.
        let rules = [
            allow(C, Some(1), Some(3), "rwm"),
            deny(C, Some(1), None, "rwm"),
        ];
        assert!(verdict(&rules, NC, 1, 3, "rw"));
        assert!(!verdict(&rules, NC, 1, 4, "r"));
    }

    #[test]
    fn wildcard_holes_are_rejected() {
        let hole = |rules: &[DeviceRule]| match DevicePolicy::from_rules(rules) {
            Err(DeviceError::WildcardHole {
                index, wildcard, ..
            }) => Some((index, wildcard)),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => None,
        };
        assert_eq!(
            hole(&[allow(C, None, None, "rwm"), deny(C, Some(1), Some(3), "w")]),
            Some((1, "c *:* rwm".to_owned()))
        );
        assert_eq!(
            hole(&[
                allow(A, None, None, "rwm"),
                deny(C, Some(1), None, "rwm"),
                allow(C, Some(1), Some(3), "r"),
            ]),
            Some((2, "c 1:* rwm".to_owned()))
        );
        assert_eq!(
            hole(&[
                allow(C, None, Some(3), "r"),
                deny(C, Some(1), Some(3), "rw")
            ]),
            Some((1, "c *:3 r".to_owned()))
        );
        // No overlap in modes, other type, or same key: fine.
        assert_eq!(
            hole(&[allow(C, Some(1), None, "r"), deny(C, Some(1), Some(3), "w")]),
            None
        );
        assert_eq!(
            hole(&[allow(B, None, None, "rwm"), deny(C, Some(1), Some(3), "w")]),
            None
        );
        assert_eq!(
            hole(&[allow(C, None, None, "rwm"), deny(C, None, None, "w")]),
            None
        );
        let ok = [allow(C, Some(1), None, "r"), deny(C, Some(1), Some(3), "w")];
        assert!(verdict(&ok, NC, 1, 3, "r"));
        assert!(!verdict(&ok, NC, 1, 3, "w"));
        // The default list followed by a user deny of /dev/null is a hole
        // only for "m" (granted by "c *:* m").
        let mut d = default_rules();
        d.push(deny(C, Some(1), Some(3), "rw"));
        assert_eq!(hole(&d), None);
        d.push(deny(C, Some(1), Some(3), "m"));
        assert_eq!(hole(&d), Some((12, "c *:* m".to_owned())));
    }

    #[test]
    fn empty_access_is_rejected() {
        let err = DevicePolicy::from_rules(&[
            allow(C, Some(1), Some(3), "r"),
            DeviceRule::allow(C, None, None, Access::NONE),
        ])
        .unwrap_err();
        assert!(
            matches!(
                err,
                DeviceError::InvalidRule {
                    index: 1,
                    source: RuleError::EmptyAccess,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn access_parsing_and_display() {
        assert_eq!(acc("mwr"), Access::RWM);
        assert_eq!(acc("rr"), Access::READ);
        assert_eq!(Access::RWM.to_string(), "rwm");
        assert_eq!(acc("mr").to_string(), "rm");
        assert_eq!(
            Access::parse("rx"),
            Err(RuleError::InvalidAccess("rx".into()))
        );
        assert_eq!(Access::from_bits(8), None);
        assert_eq!(Access::from_bits(3), Some(acc("rm")));
        assert_eq!(Access::from_bits(5), Some(acc("wm")));
        assert_eq!(allow(C, None, Some(3), "rw").to_string(), "allow c *:3 rw");
    }

    fn oci(
        allow: bool,
        typ: Option<LinuxDeviceType>,
        major: Option<i64>,
        minor: Option<i64>,
        access: Option<&str>,
    ) -> LinuxDeviceCgroup {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        if let Some(a) = access {
            b = b.access(a);
        }
        b.build().expect("builder")
    }

    #[test]
    fn converts_oci_rules_like_runc() {
        let deny_all = oci(false, None, None, None, Some("rwm"));
        assert_eq!(
            DeviceRule::try_from(&deny_all),
            Ok(deny(A, None, None, "rwm"))
        );
        let null = oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), Some("rw"));
        assert_eq!(
            DeviceRule::from_oci(&null),
            Ok(allow(C, Some(1), Some(3), "rw"))
        );
        let minus_one = oci(
            true,
            Some(LinuxDeviceType::B),
            Some(-1),
            Some(-1),
            Some("m"),
        );
        assert_eq!(
            DeviceRule::from_oci(&minus_one),
            Ok(allow(B, None, None, "m"))
        );
        let no_access = oci(true, Some(LinuxDeviceType::C), Some(1), Some(3), None);
        assert_eq!(
            DeviceRule::from_oci(&no_access),
            Err(RuleError::EmptyAccess)
        );
        let fifo = oci(true, Some(LinuxDeviceType::P), None, None, Some("rwm"));
        assert_eq!(
            DeviceRule::from_oci(&fifo),
            Err(RuleError::UnsupportedType("p".into()))
        );
        let huge = oci(
            true,
            Some(LinuxDeviceType::C),
            Some(1 << 32),
            None,
            Some("r"),
        );
        assert_eq!(
            DeviceRule::from_oci(&huge),
            Err(RuleError::NumberOutOfRange {
                field: "major",
                value: 1 << 32
            })
        );
        let neg = oci(true, Some(LinuxDeviceType::C), Some(1), Some(-2), Some("r"));
        assert!(DeviceRule::from_oci(&neg).is_err());

        match rules_from_oci(&[deny_all.clone(), null.clone(), fifo]) {
            Err(DeviceError::InvalidRule { index: 2, rule, .. }) => assert_eq!(rule, "p *:* rwm"),
            other => panic!("unexpected {other:?}"),
        }
        let list = rules_from_oci(&[deny_all, null]).unwrap();
        assert!(verdict(&list, NC, 1, 3, "w"));
        assert!(!verdict(&list, NC, 1, 3, "m"));
    }

    #[test]
    fn default_list_is_runcs() {
        let text: Vec<String> = DEFAULT_DEVICES
            .iter()
            .map(|d| format!("{} {}", d.path.unwrap_or("-"), d.rule))
            .collect();
        let same: Vec<DeviceRule> = DEFAULT_DEVICES.iter().map(|d| d.rule).collect();
        assert_eq!(same, DEFAULT_RULES);
        assert_eq!(
            text,
            [
                "- allow c *:* m",
                "- allow b *:* m",
                "/dev/null allow c 1:3 rwm",
                "/dev/random allow c 1:8 rwm",
                "/dev/full allow c 1:7 rwm",
                "/dev/tty allow c 5:0 rwm",
                "/dev/zero allow c 1:5 rwm",
                "/dev/urandom allow c 1:9 rwm",
                "- allow c 136:* rwm",
                "- allow c 5:2 rwm",
                "- allow c 10:200 rwm",
            ]
        );
    }

    #[test]
    fn default_list_semantics() {
        let d = default_rules();
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 0),
            (136, 42),
            (10, 200),
        ] {
            assert!(verdict(&d, NC, major, minor, "rwm"), "c {major}:{minor}");
        }
        assert!(
            !verdict(&d, NC, 5, 1, "rw"),
            "/dev/console is not in runc's list"
        );
        assert!(!verdict(&d, NC, 1, 1, "r"), "/dev/mem");
        assert!(
            verdict(&d, NC, 1, 1, "m"),
            "mknod is allowed for every char device"
        );
        assert!(!verdict(&d, NB, 8, 0, "r"));
        assert!(verdict(&d, NB, 8, 0, "m"));
        assert!(!verdict(&d, NB, 8, 0, "rm"));
        assert!(
            !verdict(&d, NB, 1, 3, "r"),
            "1:3 is only allowed as a char device"
        );
    }

    #[test]
    fn user_rules_come_before_defaults() {
        // A user deny of /dev/zero is overridden by runc's appended default.
        let user = [deny(C, Some(1), Some(5), "rw")];
        let merged = with_defaults(&user, &[]);
        assert_eq!(merged.len(), 1 + DEFAULT_DEVICES.len());
        assert_eq!(merged[0], user[0]);
        assert!(verdict(&merged, NC, 1, 5, "rw"));
        // Unless the spec declares its own /dev/zero node.
        let merged = with_defaults(&user, &["/dev/zero", "/dev/fuse"]);
        assert_eq!(merged.len(), DEFAULT_DEVICES.len());
        assert!(!verdict(&merged, NC, 1, 5, "r"));
        assert!(verdict(&merged, NC, 1, 3, "rw"));
    }

    /// xorshift64*: deterministic and dependency-free.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    const MAJORS: [Option<u32>; 4] = [None, Some(1), Some(5), Some(0x8000_0001)];
    const MINORS: [Option<u32>; 4] = [None, Some(3), Some(5), Some(u32::MAX)];

    fn random_rules(rng: &mut Rng, max_len: u64) -> Vec<DeviceRule> {
        let len = rng.next() % (max_len + 1);
        (0..len)
            .map(|_| DeviceRule {
                allow: rng.next() & 1 == 0,
                kind: rng.pick(&[A, C, C, C, B, B, B]),
                major: rng.pick(&MAJORS),
                minor: rng.pick(&MINORS),
                access: Access::from_bits(1 + (rng.next() % 7) as u8).unwrap(),
            })
            .collect()
    }

    #[test]
    fn generated_programs_match_reference_on_random_rule_lists() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut accepted, mut rejected, mut allowed, mut denied) = (0, 0, 0u64, 0u64);
        for _ in 0..1500 {
            let rules = random_rules(&mut rng, 8);
            let policy = match DevicePolicy::from_rules(&rules) {
                Ok(p) => p,
                Err(DeviceError::WildcardHole { .. }) => {
                    rejected += 1;
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            accepted += 1;
            let prog = policy.program();
            for node in [NC, NB] {
                for major in [1, 5, 7, 0x8000_0001, 1 << 31 | 5] {
                    for minor in [3, 5, 9, u32::MAX, 0x7fff_ffff] {
                        for bits in 1..=7u8 {
                            let req = Access::from_bits(bits).unwrap();
                            let want = reference(&rules, node, major, minor, req);
                            let got = interpret(&prog, node, major, minor, u32::from(bits));
                            assert_eq!(
                                got, want,
                                "rules {rules:?}\nrequest {node:?} {major}:{minor} {req}\nprogram {prog:#?}"
                            );
                            assert_eq!(policy.is_allowed(node, major, minor, req), want);
                            if want {
                                allowed += 1
                            } else {
                                denied += 1
                            }
                        }
                    }
                }
            }
        }
        // Guard against a vacuous run.
        assert!(
            accepted > 800 && rejected > 50,
            "accepted {accepted}, rejected {rejected}"
        );
        assert!(
            allowed > 100_000 && denied > 100_000,
            "allowed {allowed}, denied {denied}"
        );
    }

    #[test]
    fn errors_name_the_cgroup() {
        let missing = Path::new("/nonexistent/berth-devbpf");
        let err = apply(missing, &default_rules()).unwrap_err();
        assert!(matches!(err, DeviceError::OpenCgroup { .. }), "{err}");
        assert!(
            err.to_string().contains("/nonexistent/berth-devbpf"),
            "{err}"
        );

        let err = attached_programs(Path::new("/")).unwrap_err();
        assert!(matches!(err, DeviceError::NotCgroup2 { .. }), "{err}");
        assert!(
            err.to_string().contains("/ is not a cgroup v2 directory"),
            "{err}"
        );

        let err = DeviceError::Load {
            path: PathBuf::from("/sys/fs/cgroup/x"),
            source: io::Error::from_raw_os_error(libc::EACCES),
            verifier_log: "0: (95) exit\nR0 !read_ok\n".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains("/sys/fs/cgroup/x") && text.ends_with("R0 !read_ok"),
            "{text}"
        );
    }

    /// Tests against the running kernel. They need root and a cgroup v2
    /// mount; without them they report a skip, or fail when
    /// `BERTH_REQUIRE_KERNEL_TESTS` is set.
    mod kernel {
        use super::*;
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        use std::sync::atomic::{AtomicU32, Ordering};
        use std::time::{Duration, Instant};

        fn mounts(fstype: &str) -> Vec<(PathBuf, String)> {
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            info.lines()
                .filter_map(|line| {
                    let (pre, post) = line.split_once(" - ")?;
                    let mut post = post.split(' ');
                    if post.next()? != fstype {
                        return None;
                    }
                    let opts = post.nth(1).unwrap_or("").to_owned();
                    Some((PathBuf::from(pre.split(' ').nth(4)?), opts))
                })
                .collect()
        }

        fn skip_or_fail(why: &str) -> Option<PathBuf> {
            if std::env::var_os("BERTH_REQUIRE_KERNEL_TESTS").is_some() {
                panic!("kernel test cannot run: {why}");
            }
            eprintln!("SKIPPED kernel test: {why}");
            None
        }

        fn cgroup2_root() -> Option<PathBuf> {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                return skip_or_fail("not root");
            }
            let mut roots: Vec<PathBuf> = mounts("cgroup2").into_iter().map(|m| m.0).collect();
            roots.sort_by_key(|p| p != Path::new("/sys/fs/cgroup/unified"));
            match roots.into_iter().next() {
                Some(r) => Some(r),
                None => skip_or_fail("no cgroup2 mount"),
            }
        }

        /// A cgroup made by this test; removed on drop (after killing any
        /// process left inside it).
        struct TestCgroup(PathBuf);

        impl TestCgroup {
            fn new(root: &Path, name: &str) -> TestCgroup {
                static SEQ: AtomicU32 = AtomicU32::new(0);
                let dir = root.join(format!(
                    "berth-devbpf-test-{}-{}-{name}",
                    std::process::id(),
                    SEQ.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                TestCgroup(dir)
            }
        }

        impl Drop for TestCgroup {
            fn drop(&mut self) {
                let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
                let deadline = Instant::now() + Duration::from_secs(5);
                loop {
                    match std::fs::remove_dir(&self.0) {
                        Ok(()) => return,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                        Err(e) if Instant::now() > deadline => {
                            eprintln!("cannot remove test cgroup {}: {e}", self.0.display());
                            return;
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        }

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Outcome {
            Ok,
            Eperm,
            OtherError,
        }

        enum Probe {
            Open(&'static CStr, libc::c_int),
            Mknod(CString, u32, u32),
        }

        /// Forks a child that moves itself into `cg` and runs the probes.
        /// Between fork and _exit the child only makes raw system calls.
        fn probe(cg: &TestCgroup, probes: &[Probe]) -> Vec<Outcome> {
            assert!(probes.len() <= 3);
            let procs = CString::new(cg.0.join("cgroup.procs").as_os_str().as_bytes()).unwrap();
            for p in probes {
                if let Probe::Mknod(path, ..) = p {
                    // SAFETY: valid C string.
                    unsafe { libc::unlink(path.as_ptr()) };
                }
            }
            // SAFETY: the child only calls async-signal-safe functions on
            // memory prepared before the fork, then _exit()s.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
            if pid == 0 {
                unsafe {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        libc::_exit(120);
                    }
                    // "0" moves the writing process itself.
                    if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                        libc::_exit(121);
                    }
                    libc::close(fd);
                    let mut code = 0;
                    for (i, p) in probes.iter().enumerate() {
                        let err = match p {
                            Probe::Open(path, flags) => {
                                let fd = libc::open(path.as_ptr(), *flags | libc::O_CLOEXEC);
                                if fd >= 0 {
                                    libc::close(fd);
                                    0
                                } else {
                                    *libc::__errno_location()
                                }
                            }
                            Probe::Mknod(path, major, minor) => {
                                let dev = libc::makedev(*major, *minor);
                                if libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, dev) == 0 {
                                    0
                                } else {
                                    *libc::__errno_location()
                                }
                            }
                        };
                        let v = match err {
                            0 => 0,
                            libc::EPERM => 1,
                            _ => 2,
                        };
                        code |= v << (2 * i);
                    }
                    libc::_exit(code);
                }
            }
            let mut status = 0;
            loop {
                // SAFETY: waiting for our own child.
                let r = unsafe { libc::waitpid(pid, &mut status, 0) };
                if r == pid {
                    break;
                }
                let e = io::Error::last_os_error();
                assert_eq!(e.raw_os_error(), Some(libc::EINTR), "waitpid: {e}");
            }
            for p in probes {
                if let Probe::Mknod(path, ..) = p {
                    // SAFETY: valid C string.
                    unsafe { libc::unlink(path.as_ptr()) };
                }
            }
            assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
            let code = libc::WEXITSTATUS(status);
            assert!(
                code < 120,
                "child could not join {}: exit {code}",
                cg.0.display()
            );
            (0..probes.len())
                .map(|i| match (code >> (2 * i)) & 3 {
                    0 => Outcome::Ok,
                    1 => Outcome::Eperm,
                    _ => Outcome::OtherError,
                })
                .collect()
        }

        const NULL: Probe = Probe::Open(c"/dev/null", libc::O_RDWR);
        const ZERO: Probe = Probe::Open(c"/dev/zero", libc::O_RDONLY);

        fn node_path(tag: &str) -> CString {
            let p = std::env::temp_dir().join(format!("berth-devbpf-{}-{tag}", std::process::id()));
            CString::new(p.as_os_str().as_bytes()).unwrap()
        }

        /// Waits until no program with `id` exists any more.
        fn wait_freed(id: u32) -> bool {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match program_fd_by_id(id) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return true,
                    _ => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            false
        }

        #[test]
        fn allowlist_is_enforced_and_replaced_atomically() {
            let Some(root) = cgroup2_root() else { return };
            let cg = TestCgroup::new(&root, "swap");
            assert_eq!(attached_programs(&cg.0).unwrap(), Vec::<u32>::new());

            let first = apply(&cg.0, &[allow(C, Some(1), Some(3), "rwm")]).unwrap();
            assert!(first.detached.is_empty() && first.left_attached.is_empty());
            assert_eq!(attached_programs(&cg.0).unwrap(), vec![first.program_id]);
            // Our fd is closed by now: the cgroup keeps the program alive.
            assert_eq!(probe(&cg, &[NULL, ZERO]), [Outcome::Ok, Outcome::Eperm]);

            let second = apply(&cg.0, &[allow(C, Some(1), Some(5), "rwm")]).unwrap();
            assert_ne!(second.program_id, first.program_id);
            assert_eq!(second.detached, vec![first.program_id]);
            assert_eq!(attached_programs(&cg.0).unwrap(), vec![second.program_id]);
            assert_eq!(probe(&cg, &[NULL, ZERO]), [Outcome::Eperm, Outcome::Ok]);
            assert!(
                wait_freed(first.program_id),
                "replaced program still exists"
            );

            // Removing the cgroup releases its program.
            let id = second.program_id;
            drop(cg);
            assert!(wait_freed(id), "program outlived its cgroup");
        }

        #[test]
        fn several_old_programs_are_all_detached() {
            let Some(root) = cgroup2_root() else { return };
            let cg = TestCgroup::new(&root, "multi");
            let dir = open_cgroup(&cg.0).unwrap();
            for rules in [
                vec![allow(A, None, None, "rwm")],
                vec![allow(C, Some(1), Some(3), "rwm")],
            ] {
                let fd = load_program(&build_program(&rules).unwrap(), &cg.0).unwrap();
                prog_attach(dir.as_fd(), fd.as_fd(), None).unwrap();
            }
            let before = attached_programs(&cg.0).unwrap();
            assert_eq!(before.len(), 2);
            // Both programs must pass: only /dev/null.
            assert_eq!(probe(&cg, &[NULL, ZERO]), [Outcome::Ok, Outcome::Eperm]);

            let applied = apply(&cg.0, &[allow(C, Some(1), Some(5), "rwm")]).unwrap();
            let mut detached = applied.detached.clone();
            detached.sort_unstable();
            let mut expected = before.clone();
            expected.sort_unstable();
            assert_eq!(detached, expected);
            assert_eq!(attached_programs(&cg.0).unwrap(), vec![applied.program_id]);
            assert_eq!(probe(&cg, &[NULL, ZERO]), [Outcome::Eperm, Outcome::Ok]);
        }

        #[test]
        fn access_modes_are_enforced() {
            let Some(root) = cgroup2_root() else { return };
            let cg = TestCgroup::new(&root, "modes");
            let node = node_path("modes");
            let mk = || Probe::Mknod(node.clone(), 1, 3);

            apply(&cg.0, &[allow(C, Some(1), Some(3), "rw")]).unwrap();
            assert_eq!(
                probe(&cg, &[NULL, mk(), ZERO]),
                [Outcome::Ok, Outcome::Eperm, Outcome::Eperm]
            );

            apply(&cg.0, &[allow(C, Some(1), Some(3), "r")]).unwrap();
            let rd = Probe::Open(c"/dev/null", libc::O_RDONLY);
            assert_eq!(probe(&cg, &[rd, NULL]), [Outcome::Ok, Outcome::Eperm]);

            apply(
                &cg.0,
                &[allow(C, Some(1), Some(3), "rw"), allow(C, None, None, "m")],
            )
            .unwrap();
            assert_eq!(probe(&cg, &[NULL, mk()]), [Outcome::Ok, Outcome::Ok]);
        }

        #[test]
        fn runc_defaults_load_and_work() {
            let Some(root) = cgroup2_root() else { return };
            let cg = TestCgroup::new(&root, "defaults");
            apply(&cg.0, &with_defaults(&[], &[])).unwrap();
            let mut probes = vec![NULL, ZERO];
            if Path::new("/dev/kmsg").exists() {
                probes.push(Probe::Open(c"/dev/kmsg", libc::O_RDONLY));
            }
            let got = probe(&cg, &probes);
            assert_eq!(got[..2], [Outcome::Ok, Outcome::Ok]);
            if got.len() == 3 {
                assert_eq!(got[2], Outcome::Eperm, "/dev/kmsg (c 1:11) must be denied");
            }
            let node = node_path("defaults");
            assert_eq!(
                probe(&cg, &[Probe::Mknod(node, 1, 11)]),
                [Outcome::Ok],
                "c *:* m"
            );
        }

        #[test]
        fn verifier_log_is_reported() {
            let Some(root) = cgroup2_root() else { return };
            // "exit" with r0 never written.
            let bad = [Insn::new(opcode::EXIT, 0, 0, 0, 0)];
            match load_program(&bad, &root) {
                Err(DeviceError::Load {
                    verifier_log, path, ..
                }) => {
                    assert_eq!(path, root);
                    assert!(verifier_log.contains("R0"), "log: {verifier_log:?}");
                }
                other => panic!("expected a load error, got {other:?}"),
            }
        }

        /// Cross-checks the replay model against the kernel's own cgroup v1
        /// devices controller, when one is mounted: after writing the same
        /// rules to devices.allow/deny, devices.list must show exactly our
        /// exceptions (in default-deny mode) or "a *:* rwm" (default-allow).
        #[test]
        fn replay_matches_cgroup_v1_devices_controller() {
            let Some(_) = cgroup2_root() else { return };
            let Some((v1, _)) = mounts("cgroup")
                .into_iter()
                .find(|(_, opts)| opts.split(',').any(|o| o == "devices"))
            else {
                eprintln!("SKIPPED: no cgroup v1 devices hierarchy");
                return;
            };
            let top = std::fs::read_to_string(v1.join("devices.list")).unwrap_or_default();
            if top.trim() != "a *:* rwm" {
                eprintln!("SKIPPED: v1 devices root is restricted");
                return;
            }
            let cg = TestCgroup::new(&v1, "v1");
            let mut rng = Rng(0x1234_5678_9abc_def1);
            let mut compared = 0;
            for _ in 0..150 {
                let mut rules: Vec<DeviceRule> = random_rules(&mut rng, 10)
                    .into_iter()
                    .map(|mut r| {
                        // Keep numbers the v1 parser accepts and that are small.
                        r.major = r.major.filter(|&m| m < 100);
                        r.minor = r.minor.filter(|&m| m < 100);
                        r
                    })
                    .collect();
                if rng.next() & 1 == 0 {
                    rules.insert(0, allow(A, None, None, "rwm"));
                }
                let Ok(policy) = DevicePolicy::from_rules(&rules) else {
                    continue;
                };
                std::fs::write(cg.0.join("devices.deny"), "a").unwrap();
                for r in &rules {
                    let file = if r.allow {
                        "devices.allow"
                    } else {
                        "devices.deny"
                    };
                    let line = format!(
                        "{} {}:{} {}",
                        r.kind.letter(),
                        Num(r.major),
                        Num(r.minor),
                        r.access
                    );
                    std::fs::write(cg.0.join(file), &line)
                        .unwrap_or_else(|e| panic!("write {line:?} to {file}: {e}"));
                }
                let mut kernel: Vec<String> = std::fs::read_to_string(cg.0.join("devices.list"))
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect();
                kernel.sort();
                let mut ours: Vec<String> = if policy.default_allow() {
                    vec!["a *:* rwm".to_owned()]
                } else {
                    policy.exceptions().iter().map(|e| e.to_string()).collect()
                };
                ours.sort();
                assert_eq!(kernel, ours, "rules: {rules:?}");
                compared += 1;
            }
            assert!(compared > 50, "only {compared} lists compared");
        }
    }
}
