//! linux.sysctl, written by the init in the namespaces it is in: the kernel resolves
//! /proc/sys/net and the ipc sysctls by the namespaces of the process that opens them.
//! spec_support let only those through that a namespace of the container's own holds.
use std::{fs::OpenOptions, io::Write, path::Path};

use oci_spec::runtime::Spec;

use crate::{
    error::{Error, IoContext, Result},
    spec_support,
};

/// Written through berthd's /proc, before pivot_root: the image can neither shadow it nor
/// leave it out. Called once the createRuntime, prestart and createContainer hooks ran,
/// since they may create what a key names (a network plugin's `eth0` in
/// `net.ipv4.conf.eth0.*`).
pub fn write(spec: &Spec) -> Result<()> {
    let sysctls = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref());
    for (key, value) in sysctls.into_iter().flatten() {
        let field = || format!("linux.sysctl.{key}");
        let path = spec_support::sysctl_path(key).map_err(|reason| Error::InvalidConfig {
            field: field(),
            reason,
        })?;
        // Never created: a name the kernel does not know is an error (ENOENT).
        OpenOptions::new()
            .write(true)
            .open(Path::new("/proc/sys").join(path))
            .and_then(|mut file| file.write_all(value.as_bytes()))
            .context(|| format!("write {} = {value:?}", field()))?;
    }
    Ok(())
}
