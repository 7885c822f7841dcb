//! The kernel's record of which tasks are a container runtime's (`RUNTIME_EXES`,
//! `RUNTIME_TASKS`; the rule is `tracer_common::origin::is_runtime`).
use aya::maps::HashMap as BpfHashMap;
use tracer_common::{RuntimeExe, names, origin};

use super::{LoadError, Tracer, map_err};
use crate::container::runtime_exe;

impl Tracer {
    /// Tells the kernel which files are runtime executables (before the programs that read
    /// them are attached). Returns how many there are.
    pub(super) fn set_runtime_exes(&mut self, exes: &[RuntimeExe]) -> Result<usize, LoadError> {
        let mut map: BpfHashMap<_, RuntimeExe, u8> = BpfHashMap::try_from(
            self.ebpf
                .map_mut(names::MAP_RUNTIME_EXES)
                .expect("RUNTIME_EXES map"),
        )
        .map_err(map_err("RUNTIME_EXES"))?;
        for exe in exes
            .iter()
            .take(tracer_common::capacity::RUNTIME_EXES as usize)
        {
            map.insert(exe, 1, 0).map_err(map_err("RUNTIME_EXES"))?;
        }
        Ok(exes.len())
    }

    /// Whether thread `tid`, named `comm`, is a container runtime's, by the kernel's rule:
    /// the kernel saw it come from a runtime executable, or it runs one now.
    pub fn is_runtime_task(&self, tid: u32, comm: &str) -> bool {
        origin::is_runtime(
            comm.as_bytes(),
            || {
                self.ebpf
                    .map(names::MAP_RUNTIME_TASKS)
                    .and_then(|m| BpfHashMap::<_, u32, u8>::try_from(m).ok())
                    .is_some_and(|m| m.get(&tid, 0).is_ok())
            },
            || {
                runtime_exe::of_process(tid).is_some_and(|exe| {
                    self.ebpf
                        .map(names::MAP_RUNTIME_EXES)
                        .and_then(|m| BpfHashMap::<_, RuntimeExe, u8>::try_from(m).ok())
                        .is_some_and(|m| m.get(&exe, 0).is_ok())
                })
            },
        )
    }
}
