//! The profiled command: started stopped, released once counters are armed,
//! waited for, and sent the signals sofa itself receives.

use crate::RecordError;
use std::ffi::{CString, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// A forked child blocked before `exec` until [`Child::release`].
pub struct Child {
    pub pid: libc::pid_t,
    go_fd: libc::c_int,
    err_fd: libc::c_int,
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
        p.is_file() && unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0
    };
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        if !path.exists() {
            return Err(RecordError::CommandNotFound(name));
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

fn os_err(what: &str) -> RecordError {
    RecordError::Os {
        what: what.to_owned(),
        source: std::io::Error::last_os_error(),
    }
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
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());

        let mut go = [0 as libc::c_int; 2];
        let mut err = [0 as libc::c_int; 2];
        // SAFETY: plain pipe2 calls on arrays of two fds.
        unsafe {
            if libc::pipe2(go.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                return Err(os_err("pipe"));
            }
            if libc::pipe2(err.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
                libc::close(go[0]);
                libc::close(go[1]);
                return Err(os_err("pipe"));
            }
        }
        // SAFETY: the child only calls async-signal-safe functions before exec/_exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(os_err("fork"));
        }
        if pid == 0 {
            // Child: wait for the go byte, then exec; report exec failure's errno.
            unsafe {
                libc::close(go[1]);
                libc::close(err[0]);
                // Default signal handling for the command, whatever sofa installed.
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                let mut byte = 0u8;
                let n = libc::read(go[0], (&mut byte as *mut u8).cast(), 1);
                if n != 1 {
                    libc::_exit(127);
                }
                libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
                let errno = *libc::__errno_location();
                let bytes = errno.to_ne_bytes();
                libc::write(err[1], bytes.as_ptr().cast(), bytes.len());
                libc::_exit(127);
            }
        }
        unsafe {
            libc::close(go[0]);
            libc::close(err[1]);
        }
        Ok(Child {
            pid,
            go_fd: go[1],
            err_fd: err[0],
            name: args
                .first()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default(),
        })
    }

    /// Lets the child exec. Returns the exec error if there was one.
    pub fn release(&mut self) -> Result<(), RecordError> {
        let byte = 1u8;
        // SAFETY: writing one byte from a local to a pipe fd we own.
        unsafe {
            libc::write(self.go_fd, (&byte as *const u8).cast(), 1);
            libc::close(self.go_fd);
        }
        self.go_fd = -1;
        let mut buf = [0u8; 4];
        // The error pipe closes on successful exec (CLOEXEC): 0 bytes = success.
        let n = loop {
            let n = unsafe { libc::read(self.err_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break n;
        };
        unsafe { libc::close(self.err_fd) };
        self.err_fd = -1;
        if n == 4 {
            let errno = i32::from_ne_bytes(buf);
            let _ = self.wait();
            let source = std::io::Error::from_raw_os_error(errno);
            return Err(if errno == libc::ENOENT {
                RecordError::CommandNotFound(self.name.clone())
            } else {
                RecordError::CannotExecute {
                    command: self.name.clone(),
                    source,
                }
            });
        }
        Ok(())
    }

    /// Kills a child that will not be released (set-up failed).
    pub fn abandon(mut self) {
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
        }
        let _ = self.wait();
    }

    /// Waits for the child to end, retrying when interrupted by a signal.
    pub fn wait(&mut self) -> Result<Exit, RecordError> {
        let mut status = 0;
        loop {
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(RecordError::Os {
                    what: "waitpid".into(),
                    source: err,
                });
            }
        }
        if libc::WIFEXITED(status) {
            Ok(Exit::Code(libc::WEXITSTATUS(status)))
        } else {
            Ok(Exit::Signal(libc::WTERMSIG(status)))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        for fd in [self.go_fd, self.err_fd] {
            if fd >= 0 {
                unsafe { libc::close(fd) };
            }
        }
    }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP sent to sofa go to `pid` instead,
/// so the command decides how to stop and sofa still finalizes the archive.
pub fn forward_signals_to(pid: libc::pid_t) {
    FORWARD_TO.store(pid, Ordering::Relaxed);
    let handler = forward as extern "C" fn(libc::c_int);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: installing a handler that only calls kill().
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
}
