//! The profiled command: started stopped, released once counters are armed,
//! waited for, and sent the signals sofa itself receives.

use super::sys;
use crate::RecordError;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// A forked child blocked before `exec` until [`Child::release`].
pub struct Child {
    pub pid: libc::pid_t,
    /// `None` once released.
    go: Option<File>,
    exec_error: Option<File>,
    name: String,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell convention: the code, or 128 + signal.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Finds `program` the way `execvp` would, so "command not found" is
/// reported before anything is forked.
pub fn resolve(program: &OsStr) -> Result<PathBuf, RecordError> {
    let name = program.to_string_lossy().into_owned();
    let is_exec = |p: &Path| {
        let Ok(c) = CString::new(p.as_os_str().as_bytes()) else {
            return false;
        };
        p.is_file() && sys::is_executable(&c)
    };
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        if !path.exists() {
            return Err(RecordError::CommandNotFound(name));
        }
        if path.is_dir() {
            return Err(RecordError::CannotExecute {
                command: name,
                source: std::io::Error::from_raw_os_error(libc::EISDIR),
            });
        }
        if !is_exec(&path) {
            return Err(RecordError::CannotExecute {
                command: name,
                source: std::io::Error::from_raw_os_error(libc::EACCES),
            });
        }
        return Ok(path);
    }
    let path_var =
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(program))
        .find(|candidate| is_exec(candidate))
        .ok_or(RecordError::CommandNotFound(name))
}

fn cstring(bytes: Vec<u8>, what: &str) -> Result<CString, RecordError> {
    CString::new(bytes).map_err(|_| RecordError::Os {
        what: format!("{what} contains a NUL byte"),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    })
}

impl Child {
    /// Forks a child that waits for [`Child::release`] and then execs
    /// `program` with `args` and the current environment plus `extra_env`.
    pub fn spawn_stopped(
        program: &Path,
        args: &[OsString],
        extra_env: &[(&str, &str)],
    ) -> Result<Child, RecordError> {
        // Everything the child needs is allocated before fork: after it, only
        // async-signal-safe calls are allowed.
        let path = cstring(program.as_os_str().as_bytes().to_vec(), "command")?;
        let argv: Vec<CString> = args
            .iter()
            .map(|a| cstring(a.clone().into_vec(), "argument"))
            .collect::<Result<_, _>>()?;
        let mut envp: Vec<CString> = Vec::new();
        for (k, v) in std::env::vars_os() {
            if extra_env.iter().any(|(ek, _)| OsStr::new(ek) == k) {
                continue;
            }
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            envp.push(cstring(kv, "environment")?);
        }
        for (k, v) in extra_env {
            envp.push(cstring(format!("{k}={v}").into_bytes(), "environment")?);
        }
        let forked = sys::fork_exec_on_go(&path, &argv, &envp).map_err(|e| RecordError::Os {
            what: "starting the command".to_owned(),
            source: e,
        })?;
        Ok(Child {
            pid: forked.pid,
            go: Some(forked.go),
            exec_error: Some(forked.exec_error),
            name: args
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }

    /// Lets the child exec. Returns the exec error if there was one.
    pub fn release(&mut self) -> Result<(), RecordError> {
        // A write error means the child is gone; its exit status tells.
        if let Some(mut go) = self.go.take() {
            let _ = go.write_all(&[1]);
        }
        // The error pipe closes on successful exec (close-on-exec): no bytes = success.
        let mut errno = Vec::new();
        if let Some(mut pipe) = self.exec_error.take() {
            let _ = pipe.read_to_end(&mut errno);
        }
        let Ok(errno) = <[u8; 4]>::try_from(errno) else {
            return Ok(());
        };
        let errno = i32::from_ne_bytes(errno);
        let _ = self.wait();
        let source = std::io::Error::from_raw_os_error(errno);
        Err(if errno == libc::ENOENT {
            RecordError::CommandNotFound(self.name.clone())
        } else {
            RecordError::CannotExecute {
                command: self.name.clone(),
                source,
            }
        })
    }

    /// Kills a child that will not be released (set-up failed).
    pub fn abandon(mut self) {
        let _ = sys::kill(self.pid, libc::SIGKILL);
        let _ = self.wait();
    }

    /// Waits for the child to end, retrying when interrupted by a signal.
    pub fn wait(&mut self) -> Result<Exit, RecordError> {
        match sys::wait(self.pid) {
            Ok(sys::Ended::Code(c)) => Ok(Exit::Code(c)),
            Ok(sys::Ended::Signal(s)) => Ok(Exit::Signal(s)),
            Err(source) => Err(RecordError::Os {
                what: "waitpid".into(),
                source,
            }),
        }
    }
}

/// The command's pid once it runs; 0 before.
static COMMAND: AtomicI32 = AtomicI32::new(0);
/// Ctrl-C presses (SIGINTs to sofa) while the command ran.
static INTERRUPTS: AtomicU32 = AtomicU32::new(0);

/// Runs in the signal handler: only atomics, kill and write.
fn on_signal(signal: libc::c_int, sender: sys::Sender) {
    let pid = COMMAND.load(Ordering::Relaxed);
    // The command signalling its own process group reached itself already.
    if pid <= 0 || sender.pid == pid {
        return;
    }
    // The terminal sends its signals to the whole foreground process group,
    // the command included: forwarding those would deliver them twice.
    let forward = !sender.is_kernel();
    if signal != libc::SIGINT {
        if forward {
            sys::kill_from_handler(pid, signal);
        }
        return;
    }
    // Ctrl-C escalates as `perf record`'s does: the command decides how to
    // stop at the first, is terminated at the second and killed at the
    // third; sofa finalizes the archive every time.
    match INTERRUPTS.fetch_add(1, Ordering::Relaxed) {
        0 => {
            if forward {
                sys::kill_from_handler(pid, libc::SIGINT);
            }
            sys::write_stderr(
                b"\nsofa: interrupted: waiting for the command to exit \
                  (Ctrl-C again sends it SIGTERM, a third time SIGKILL)\n",
            );
        }
        1 => {
            sys::kill_from_handler(pid, libc::SIGTERM);
            sys::write_stderr(b"sofa: sent SIGTERM to the command (Ctrl-C again: SIGKILL)\n");
        }
        _ => {
            sys::kill_from_handler(pid, libc::SIGKILL);
            sys::write_stderr(b"sofa: sent SIGKILL to the command\n");
        }
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP that sofa receives reach `pid`
/// once (see `on_signal`), so the command decides how to stop and sofa
/// still finalizes the archive.
pub fn forward_signals_to(pid: libc::pid_t) {
    COMMAND.store(pid, Ordering::Relaxed);
    sys::on_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP], on_signal);
}
