//! `linux.seccomp`. berthd compiles the profile at create, through libseccomp, before
//! anything of the container exists: whatever the profile asks that cannot be done is
//! refused there, naming the field, and nothing is left behind. The init is handed the
//! compiled program and only loads it, at the moment `process::become_user_process` says.
//!
//! The program is libseccomp's with a stub in front, as runc's patchbpf does it: a syscall
//! numbered above every syscall the profile names (on its architecture) fails with ENOSYS
//! instead of taking the default action. A profile written before a syscall existed then
//! makes it look absent rather than forbidden, and libc falls back to the older syscall
//! (glibc's clone3 -> clone, statx -> fstatat, faccessat2 -> faccessat): an EPERM would be
//! taken as the answer. Like runc's, the stub only sees the highest number: a syscall
//! added out of order below it (close_range was) still takes the default action.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Seek},
};

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, IoContext, Result};

/// One classic-BPF instruction, laid out as the kernel's `struct sock_filter`, so the init
/// hands the program over as it is, without allocating.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instruction {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

const _: () = assert!(
    std::mem::size_of::<Instruction>() == std::mem::size_of::<libc::sock_filter>()
        && std::mem::align_of::<Instruction>() == std::mem::align_of::<libc::sock_filter>()
);

/// A compiled profile: what the init passes to seccomp(2).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Program {
    instructions: Vec<Instruction>,
    /// SECCOMP_FILTER_FLAG_* bits.
    flags: u32,
}

pub struct Compiled {
    pub program: Program,
    /// Names libseccomp does not know, skipped (as runc skips them): Docker's profile names
    /// syscalls that older kernels, and older libseccomp, lack.
    pub unknown_syscalls: Vec<String>,
}

/// The kernel refuses longer programs (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;

/// Set in the number of every x32 syscall; x32 shares x86_64's AUDIT_ARCH value.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidConfig {
        field: field.into(),
        reason: reason.into(),
    }
}

fn libseccomp_failed(field: impl Into<String>, error: libseccomp::error::SeccompError) -> Error {
    invalid(field, format!("libseccomp: {error}"))
}

/// The profile as a program, or the first thing in it that cannot be honoured.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Compiled> {
    let flags = filter_flags(seccomp)?;
    let default_action = action(
        seccomp.default_action(),
        seccomp.default_errno_ret(),
        "linux.seccomp.defaultErrnoRet",
    )?;
    let mut filter = ScmpFilterContext::new(default_action)
        .map_err(|e| libseccomp_failed("linux.seccomp.defaultAction", e))?;
    let mut arches = vec![ScmpArch::native()];
    for (index, arch) in seccomp.architectures().iter().flatten().enumerate() {
        let field = format!("linux.seccomp.architectures[{index}]");
        let scmp = scmp_arch(*arch).ok_or_else(|| invalid(&field, format!("{arch} is unknown")))?;
        filter.add_arch(scmp).map_err(|_| {
            invalid(
                &field,
                format!(
                    "{arch} is not supported by libseccomp {}",
                    libseccomp_version()
                ),
            )
        })?;
        arches.push(scmp);
    }
    let rules = seccomp.syscalls().clone().unwrap_or_default();
    // A binary tree instead of a list once lookups get long, as runc does.
    if rules.len() > 32 {
        filter
            .set_ctl_optimize(2)
            .map_err(|e| libseccomp_failed("linux.seccomp", e))?;
    }

    let mut unknown_syscalls = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        let field = format!("linux.seccomp.syscalls[{index}]");
        let rule_action = action(
            rule.action(),
            rule.errno_ret(),
            &format!("{field}.errnoRet"),
        )?;
        let conditions = rule
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(arg_index, arg)| condition(arg, &format!("{field}.args[{arg_index}]")))
            .collect::<Result<Vec<_>>>()?;
        let mut indices: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
        indices.sort_unstable();
        let separately = indices.windows(2).any(|pair| pair[0] == pair[1]);
        // libseccomp refuses a rule that repeats the default action; it changes nothing.
        if rule_action == default_action {
            continue;
        }
        for name in rule.names() {
            let Ok(syscall) = libseccomp::ScmpSyscall::from_name(name) else {
                unknown_syscalls.push(name.clone());
                continue;
            };
            add_rule(&mut filter, rule_action, syscall, &conditions, separately)
                .map_err(|e| invalid(&field, format!("{name}: libseccomp: {e}")))?;
        }
    }

    let mut instructions = if enosys_stub_applies(default_action) {
        enosys_stub(&highest_syscalls(&arches, &rules))
    } else {
        Vec::new()
    };
    instructions.extend(export(&filter)?);
    if instructions.len() > MAX_INSTRUCTIONS {
        return Err(invalid(
            "linux.seccomp",
            format!(
                "the profile compiles to {} BPF instructions, more than the kernel's {MAX_INSTRUCTIONS}",
                instructions.len()
            ),
        ));
    }
    Ok(Compiled {
        program: Program {
            instructions,
            flags,
        },
        unknown_syscalls,
    })
}

fn libseccomp_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| v.to_string())
        .unwrap_or_else(|_| "(version unknown)".into())
}

/// runc's flags: with no `flags` at all (not even an empty list) SPEC_ALLOW, which spares
/// the container the cost of the Speculative Store Bypass mitigation seccomp would
/// otherwise force on it; the list when there is one.
fn filter_flags(seccomp: &LinuxSeccomp) -> Result<u32> {
    let Some(flags) = seccomp.flags() else {
        return Ok(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32);
    };
    flags.iter().try_fold(0, |all, flag| {
        let bit = match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            // It needs libseccomp 2.6, and the kernel takes it only with a notify listener,
            // which berth does not make (SCMP_ACT_NOTIFY is refused).
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                return Err(Error::Unsupported {
                    field: "linux.seccomp.flags: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV".into(),
                })
            }
        };
        Ok(all | bit as u32)
    })
}

/// `errno_field` names the errnoRet that goes with the action, in messages.
fn action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: &str,
) -> Result<ScmpAction> {
    // runc's default for ERRNO and TRACE without errnoRet.
    let errno = || {
        let errno = errno_ret.unwrap_or(libc::EPERM as u32);
        u16::try_from(errno).map_err(|_| {
            invalid(
                errno_field,
                format!("{errno} does not fit in the 16 bits a seccomp action returns"),
            )
        })
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno()?.into()),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno()?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        // Handing the listener its fd and the container's state is not done yet.
        LinuxSeccompAction::ScmpActNotify => {
            return Err(Error::Unsupported {
                field: "linux.seccomp: SCMP_ACT_NOTIFY".into(),
            })
        }
    })
}

fn condition(arg: &LinuxSeccompArg, field: &str) -> Result<ScmpArgCompare> {
    let index = u32::try_from(arg.index())
        .ok()
        .filter(|index| *index < 6)
        .ok_or_else(|| {
            invalid(
                format!("{field}.index"),
                format!("{} is not a syscall argument (0 to 5)", arg.index()),
            )
        })?;
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // `value` is the mask, `valueTwo` what the masked argument must equal.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            ))
        }
    };
    Ok(ScmpArgCompare::new(index, op, arg.value()))
}

/// Conditions on different arguments must all hold. libseccomp cannot put two on the same
/// argument in one rule; then (`separately`), as runc does, each becomes a rule of its own
/// and any may hold.
fn add_rule(
    filter: &mut ScmpFilterContext,
    action: ScmpAction,
    syscall: libseccomp::ScmpSyscall,
    conditions: &[ScmpArgCompare],
    separately: bool,
) -> std::result::Result<(), libseccomp::error::SeccompError> {
    if conditions.is_empty() {
        filter.add_rule(action, syscall)?;
    } else if separately {
        for condition in conditions {
            filter.add_rule_conditional(action, syscall, std::slice::from_ref(condition))?;
        }
    } else {
        filter.add_rule_conditional(action, syscall, conditions)?;
    }
    Ok(())
}

/// Every architecture the runtime spec names but the native one, with libseccomp's token.
const ARCHES: [(Arch, ScmpArch); 23] = [
    (Arch::ScmpArchX86, ScmpArch::X86),
    (Arch::ScmpArchX86_64, ScmpArch::X8664),
    (Arch::ScmpArchX32, ScmpArch::X32),
    (Arch::ScmpArchArm, ScmpArch::Arm),
    (Arch::ScmpArchAarch64, ScmpArch::Aarch64),
    (Arch::ScmpArchMips, ScmpArch::Mips),
    (Arch::ScmpArchMips64, ScmpArch::Mips64),
    (Arch::ScmpArchMips64n32, ScmpArch::Mips64N32),
    (Arch::ScmpArchMipsel, ScmpArch::Mipsel),
    (Arch::ScmpArchMipsel64, ScmpArch::Mipsel64),
    (Arch::ScmpArchMipsel64n32, ScmpArch::Mipsel64N32),
    (Arch::ScmpArchPpc, ScmpArch::Ppc),
    (Arch::ScmpArchPpc64, ScmpArch::Ppc64),
    (Arch::ScmpArchPpc64le, ScmpArch::Ppc64Le),
    (Arch::ScmpArchS390, ScmpArch::S390),
    (Arch::ScmpArchS390x, ScmpArch::S390X),
    (Arch::ScmpArchParisc, ScmpArch::Parisc),
    (Arch::ScmpArchParisc64, ScmpArch::Parisc64),
    (Arch::ScmpArchRiscv64, ScmpArch::Riscv64),
    (Arch::ScmpArchLoongarch64, ScmpArch::Loongarch64),
    (Arch::ScmpArchM68k, ScmpArch::M68k),
    (Arch::ScmpArchSh, ScmpArch::Sh),
    (Arch::ScmpArchSheb, ScmpArch::Sheb),
];

fn scmp_arch(arch: Arch) -> Option<ScmpArch> {
    if arch == Arch::ScmpArchNative {
        return Some(ScmpArch::native());
    }
    ARCHES
        .iter()
        .find(|(oci, _)| *oci == arch)
        .map(|(_, scmp)| *scmp)
}

/// The kernel's AUDIT_ARCH value, which seccomp_data carries: the runtime spec's numbers
/// are libseccomp's, which are the kernel's but for x32 (it is x86_64 with a bit set in
/// the syscall number).
fn audit_arch(arch: ScmpArch) -> u32 {
    let (oci, _) = ARCHES
        .iter()
        .find(|(_, scmp)| *scmp == arch)
        .expect("libseccomp's architectures are the runtime spec's");
    match oci {
        Arch::ScmpArchX32 => Arch::ScmpArchX86_64 as u32,
        other => *other as u32,
    }
}

/// The highest syscall number the profile names, per AUDIT_ARCH value and, on x86_64, per
/// ABI (x86_64 and x32). Names unknown on an architecture count for nothing there.
#[derive(Default)]
struct Highest {
    plain: Option<u32>,
    x32: Option<u32>,
}

fn highest_syscalls(
    arches: &[ScmpArch],
    rules: &[oci_spec::runtime::LinuxSyscall],
) -> BTreeMap<u32, Highest> {
    let mut highest: BTreeMap<u32, Highest> = BTreeMap::new();
    for arch in arches {
        let arch = if *arch == ScmpArch::Native {
            ScmpArch::native()
        } else {
            *arch
        };
        let top = rules
            .iter()
            .flat_map(|rule| rule.names())
            .filter_map(|name| libseccomp::ScmpSyscall::from_name_by_arch(name, arch).ok())
            // Negative numbers are libseccomp's pseudo-syscalls: absent on this architecture.
            .filter_map(|syscall| u32::try_from(i32::from(syscall)).ok())
            .max();
        let Some(top) = top else { continue };
        let entry = highest.entry(audit_arch(arch)).or_default();
        let slot = if arch == ScmpArch::X32 {
            &mut entry.x32
        } else {
            &mut entry.plain
        };
        *slot = Some(top);
    }
    highest
}

/// runc's rule: no stub when unknown syscalls are allowed anyway (a tracer is trusted to
/// answer ENOSYS itself), or when the default already is ENOSYS.
fn enosys_stub_applies(default_action: ScmpAction) -> bool {
    !matches!(
        default_action,
        ScmpAction::Allow | ScmpAction::Log | ScmpAction::Trace(_)
    ) && default_action != ScmpAction::Errno(libc::ENOSYS)
}

/// Where a jump of the stub lands.
#[derive(Clone, Copy)]
enum Target {
    Next,
    Label(usize),
}

enum Op {
    /// Loads the 32-bit word at this offset of seccomp_data.
    Load(u32),
    Return(u32),
    Always(Target),
    If {
        test: u32,
        k: u32,
        then: Target,
        otherwise: Target,
    },
}

/// The stub runc's patchbpf puts in front of libseccomp's program, in berth's own layout:
///
/// ```text
///       ld  [arch]
///       jeq #AUDIT_ARCH, 0, next        (one section per architecture)
///       ld  [nr]
///       jeq #0, enosys, 0               (s390 and s390x: unknown syscalls arrive as 0)
///       jset #X32_BIT, x32, 0           (x86_64: the two ABIs have their own numbers)
///       jgt #highest, enosys, filter    (ja filter when an ABI names nothing)
/// x32:  jgt #highest_x32, enosys, filter
/// next: ...
///       ja filter                       (an architecture the profile does not list)
/// enosys: ret ERRNO(ENOSYS)
/// filter: libseccomp's program
/// ```
fn enosys_stub(highest: &BTreeMap<u32, Highest>) -> Vec<Instruction> {
    if highest.is_empty() {
        return Vec::new();
    }
    // Labels are indices into `labels`, each the instruction it stands for once placed.
    let mut labels: Vec<usize> = Vec::new();
    let mut label = || {
        labels.push(usize::MAX);
        labels.len() - 1
    };
    let (enosys, filter) = (label(), label());
    let mut ops: Vec<Op> = vec![Op::Load(4)];
    let mut places: Vec<(usize, usize)> = Vec::new();
    let limit = |ops: &mut Vec<Op>, top: Option<u32>| {
        ops.push(match top {
            Some(top) => Op::If {
                test: libc::BPF_JGT,
                k: top,
                then: Target::Label(enosys),
                otherwise: Target::Label(filter),
            },
            None => Op::Always(Target::Label(filter)),
        })
    };
    for (audit, top) in highest {
        let next = label();
        ops.push(Op::If {
            test: libc::BPF_JEQ,
            k: *audit,
            then: Target::Next,
            otherwise: Target::Label(next),
        });
        ops.push(Op::Load(0));
        if [Arch::ScmpArchS390 as u32, Arch::ScmpArchS390x as u32].contains(audit) {
            ops.push(Op::If {
                test: libc::BPF_JEQ,
                k: 0,
                then: Target::Label(enosys),
                otherwise: Target::Next,
            });
        }
        if *audit == Arch::ScmpArchX86_64 as u32 {
            let x32 = label();
            ops.push(Op::If {
                test: libc::BPF_JSET,
                k: X32_SYSCALL_BIT,
                then: Target::Label(x32),
                otherwise: Target::Next,
            });
            limit(&mut ops, top.plain);
            places.push((x32, ops.len()));
            limit(&mut ops, top.x32);
        } else {
            limit(&mut ops, top.plain);
        }
        places.push((next, ops.len()));
    }
    ops.push(Op::Always(Target::Label(filter)));
    places.push((enosys, ops.len()));
    ops.push(Op::Return(libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    places.push((filter, ops.len()));
    for (label, at) in places {
        labels[label] = at;
    }

    let offset = |at: usize, target: Target| -> usize {
        match target {
            Target::Next => 0,
            Target::Label(label) => labels[label] - at - 1,
        }
    };
    let short = |at: usize, target: Target| -> u8 {
        u8::try_from(offset(at, target))
            .expect("the stub is shorter than 256 instructions: 24 architectures of 7 at most")
    };
    ops.iter()
        .enumerate()
        .map(|(at, op)| {
            let (code, jt, jf, k) = match *op {
                Op::Load(offset) => (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, offset),
                Op::Return(value) => (libc::BPF_RET | libc::BPF_K, 0, 0, value),
                Op::Always(target) => (
                    libc::BPF_JMP | libc::BPF_JA,
                    0,
                    0,
                    offset(at, target) as u32,
                ),
                Op::If {
                    test,
                    k,
                    then,
                    otherwise,
                } => (
                    libc::BPF_JMP | test | libc::BPF_K,
                    short(at, then),
                    short(at, otherwise),
                    k,
                ),
            };
            Instruction {
                code: code as u16,
                jt,
                jf,
                k,
            }
        })
        .collect()
}

/// libseccomp's program, through a memfd (libseccomp 2.5 exports to an fd only).
fn export(filter: &ScmpFilterContext) -> Result<Vec<Instruction>> {
    let memfd =
        nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .context(|| "memfd for the seccomp program".into())?;
    filter
        .export_bpf(&memfd)
        .map_err(|e| libseccomp_failed("linux.seccomp", e))?;
    let mut file = File::from(memfd);
    let mut bytes = Vec::new();
    file.rewind()
        .and_then(|_| file.read_to_end(&mut bytes))
        .context(|| "read the seccomp program".into())?;
    Ok(bytes
        .chunks_exact(8)
        .map(|raw| Instruction {
            code: u16::from_ne_bytes([raw[0], raw[1]]),
            jt: raw[2],
            jf: raw[3],
            k: u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]),
        })
        .collect())
}

/// Loads the program into this process; it stays for every process it executes.
/// Allocates nothing.
pub fn load(program: &Program) -> Result<()> {
    let prog = libc::sock_fprog {
        // compile keeps programs within BPF_MAXINSNS.
        len: program.instructions.len() as u16,
        filter: program
            .instructions
            .as_ptr()
            .cast::<libc::sock_filter>()
            .cast_mut(),
    };
    // SAFETY: seccomp(2) reads `prog` and the instructions it points to, both alive for
    // the call; Instruction has sock_filter's layout (asserted above).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::c_ulong::from(program.flags),
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context(|| "load the seccomp filter".into());
    }
    Ok(())
}

/// Why config.json, which did not parse, fails in its seccomp section, naming the field:
/// serde's message for an unknown enum value ("unknown variant ...") does not say where.
pub fn explain_parse_failure(config: &[u8]) -> Option<Error> {
    let config: Value = serde_json::from_slice(config).ok()?;
    let seccomp = config.pointer("/linux/seccomp")?;
    // Each field checked is required.
    fn check<T: DeserializeOwned>(value: Option<&Value>, field: String) -> Option<Error> {
        let Some(value) = value else {
            return Some(invalid(field, "missing"));
        };
        serde_json::from_value::<T>(value.clone())
            .err()
            .map(|e| invalid(field, e.to_string()))
    }
    fn list<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
        value
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
    }
    check::<LinuxSeccompAction>(
        seccomp.get("defaultAction"),
        "linux.seccomp.defaultAction".into(),
    )
    .or_else(|| {
        list(seccomp, "architectures").find_map(|(index, arch)| {
            check::<Arch>(Some(arch), format!("linux.seccomp.architectures[{index}]"))
        })
    })
    .or_else(|| {
        list(seccomp, "flags").find_map(|(index, flag)| {
            check::<LinuxSeccompFilterFlag>(Some(flag), format!("linux.seccomp.flags[{index}]"))
        })
    })
    .or_else(|| {
        list(seccomp, "syscalls").find_map(|(index, rule)| {
            let field = format!("linux.seccomp.syscalls[{index}]");
            check::<LinuxSeccompAction>(rule.get("action"), format!("{field}.action")).or_else(
                || {
                    list(rule, "args").find_map(|(arg_index, arg)| {
                        check::<LinuxSeccompOperator>(
                            arg.get("op"),
                            format!("{field}.args[{arg_index}].op"),
                        )
                    })
                },
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(json: serde_json::Value) -> LinuxSeccomp {
        serde_json::from_value(json).unwrap()
    }

    fn refusal(json: serde_json::Value) -> String {
        match compile(&profile(json)) {
            Ok(_) => panic!("compiled"),
            Err(error) => error.to_string(),
        }
    }

    fn nr(name: &str) -> i64 {
        i32::from(libseccomp::ScmpSyscall::from_name(name).unwrap()).into()
    }

    /// Loads `program` in a child, which makes the raw syscall `probe` and exits with
    /// the errno it got (0 when it succeeded); returns that.
    fn errno_in_child(program: &Program, probe: i64) -> i32 {
        // SAFETY: the child only makes raw syscalls (load allocates nothing) and _exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => unsafe {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if load(program).is_err() {
                    libc::_exit(200);
                }
                let rc = libc::syscall(probe, 0, 0, 0);
                libc::_exit(if rc < 0 { *libc::__errno_location() } else { 0 })
            },
            nix::unistd::ForkResult::Parent { child } => {
                match nix::sys::wait::waitpid(child, None).unwrap() {
                    nix::sys::wait::WaitStatus::Exited(_, code) => code,
                    other => panic!("the child ended with {other:?}"),
                }
            }
        }
    }

    fn allow_list() -> LinuxSeccomp {
        profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{
                "names": ["exit_group", "exit", "getppid", "no_such_syscall"],
                "action": "SCMP_ACT_ALLOW"
            }]
        }))
    }

    #[test]
    fn syscalls_newer_than_the_profile_fail_with_enosys_older_ones_take_the_default() {
        let compiled = compile(&allow_list()).unwrap();
        let newest = [nr("exit_group"), nr("exit"), nr("getppid")]
            .into_iter()
            .max()
            .unwrap();
        assert_eq!(errno_in_child(&compiled.program, newest + 1), libc::ENOSYS);
        assert_eq!(errno_in_child(&compiled.program, nr("getpid")), libc::EPERM);
        assert_eq!(errno_in_child(&compiled.program, nr("getppid")), 0);
    }

    #[test]
    fn no_enosys_stub_when_unknown_syscalls_are_allowed() {
        let mut profile = allow_list();
        profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
        profile.set_syscalls(Some(vec![serde_json::from_value(serde_json::json!({
            "names": ["getppid"], "action": "SCMP_ACT_ERRNO"
        }))
        .unwrap()]));
        let compiled = compile(&profile).unwrap();
        // gettid is numbered above getppid: a stub would answer ENOSYS.
        assert!(nr("gettid") > nr("getppid"));
        assert_eq!(errno_in_child(&compiled.program, nr("gettid")), 0);
        assert_eq!(
            errno_in_child(&compiled.program, nr("getppid")),
            libc::EPERM
        );
    }

    #[test]
    fn unknown_syscall_names_are_skipped_and_reported() {
        let compiled = compile(&allow_list()).unwrap();
        assert_eq!(compiled.unknown_syscalls, ["no_such_syscall"]);
    }

    #[test]
    fn errno_ret_is_what_a_denied_syscall_returns() {
        let compiled = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5}]
        })))
        .unwrap();
        assert_eq!(errno_in_child(&compiled.program, nr("getppid")), libc::EIO);
    }

    #[test]
    fn conditions_on_one_argument_are_alternatives() {
        let compiled = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{
                "names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                "args": [
                    {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                    {"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}
                ]
            }]
        })))
        .unwrap();
        // errno_in_child passes 0 as the first argument.
        assert_eq!(
            errno_in_child(&compiled.program, nr("getppid")),
            libc::EPERM
        );
    }

    #[test]
    fn notify_is_refused_by_name() {
        let message = refusal(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
        }));
        assert!(
            message.contains("linux.seccomp: SCMP_ACT_NOTIFY is not supported"),
            "{message}"
        );
    }

    #[test]
    fn wait_killable_recv_is_refused_by_name() {
        let message = refusal(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
        }));
        assert!(
            message.contains("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),
            "{message}"
        );
    }

    #[test]
    fn an_argument_past_the_sixth_is_refused_naming_it() {
        let message = refusal(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO",
                          "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
        }));
        assert!(
            message.starts_with("linux.seccomp.syscalls[0].args[0].index:"),
            "{message}"
        );
    }

    #[test]
    fn an_errno_too_large_is_refused_naming_it() {
        let message = refusal(serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000
        }));
        assert!(
            message.starts_with("linux.seccomp.defaultErrnoRet:"),
            "{message}"
        );
    }

    #[test]
    fn an_architecture_libseccomp_lacks_is_refused_naming_it() {
        // LoongArch arrived in libseccomp 2.6; Debian 12 has 2.5.4.
        let version = libseccomp::ScmpVersion::current().unwrap();
        if (version.major, version.minor) >= (2, 6) {
            return;
        }
        let message = refusal(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_LOONGARCH64"]
        }));
        assert!(
            message.starts_with("linux.seccomp.architectures[0]:"),
            "{message}"
        );
    }

    #[test]
    fn unknown_enum_values_are_explained_with_their_field() {
        let explain = |seccomp: serde_json::Value| {
            let config = serde_json::json!({"linux": {"seccomp": seccomp}});
            explain_parse_failure(&serde_json::to_vec(&config).unwrap())
                .map(|error| error.to_string())
                .unwrap_or_default()
        };
        let rule = |action: &str, op: &str| {
            serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["write"], "action": action, "args": [{"index": 0, "value": 1, "op": op}]}
            ]})
        };
        assert_eq!(
            explain(serde_json::json!({"syscalls": []})),
            "linux.seccomp.defaultAction: missing"
        );
        assert!(
            explain(serde_json::json!({"defaultAction": "SCMP_ACT_BOGUS"}))
                .starts_with("linux.seccomp.defaultAction: unknown variant `SCMP_ACT_BOGUS`")
        );
        assert!(
            explain(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                                           "architectures": ["SCMP_ARCH_X86", "SCMP_ARCH_VAX"]}))
            .starts_with("linux.seccomp.architectures[1]: unknown variant `SCMP_ARCH_VAX`")
        );
        assert!(explain(rule("SCMP_ACT_BOGUS", "SCMP_CMP_EQ"))
            .starts_with("linux.seccomp.syscalls[1].action: unknown variant `SCMP_ACT_BOGUS`"));
        assert!(explain(rule("SCMP_ACT_ALLOW", "SCMP_CMP_BOGUS"))
            .starts_with("linux.seccomp.syscalls[1].args[0].op: unknown variant `SCMP_CMP_BOGUS`"));
        assert!(
            explain(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
                                           "flags": ["SECCOMP_FILTER_FLAG_BOGUS"]}))
            .starts_with("linux.seccomp.flags[0]: unknown variant")
        );
    }
}
