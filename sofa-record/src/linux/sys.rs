//! Every raw system call of the recorder, each behind a safe function: the
//! only place in sofa with `unsafe` code besides the perf crate's own.
//! (perf_event_open itself goes through the `perf-event-open` crate.)

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

fn sysconf(name: libc::c_int) -> libc::c_long {
    // SAFETY: sysconf reads a configuration value; it has no preconditions.
    unsafe { libc::sysconf(name) }
}

/// CPUs online now (at least 1).
pub fn online_cpus() -> u32 {
    sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as u32
}

/// Clock ticks per second of /proc's CPU times (USER_HZ, at least 1).
pub fn clock_ticks_per_second() -> u64 {
    sysconf(libc::_SC_CLK_TCK).max(1) as u64
}

/// CPU time the calling thread has used, ns (0 if the clock is missing).
pub fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `ts`, which we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Bytes per page (at least 1).
pub fn page_size() -> u64 {
    sysconf(libc::_SC_PAGESIZE).max(1) as u64
}

/// What `uname(2)` says of this host.
pub struct Uname {
    pub nodename: String,
    /// Kernel release, as `uname -r`.
    pub release: String,
}

pub fn uname() -> Option<Uname> {
    fn field(chars: &[libc::c_char]) -> String {
        let bytes: Vec<u8> = chars
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    // SAFETY: utsname is plain bytes: all zeroes is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we own.
    let ok = unsafe { libc::uname(&mut uts) } == 0;
    ok.then(|| Uname {
        nodename: field(&uts.nodename),
        release: field(&uts.release),
    })
}

/// The clocks sofa reads.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// CLOCK_MONOTONIC: the archive's time base (perf stamps samples with it).
    Monotonic,
    /// CLOCK_REALTIME: wall-clock time.
    Realtime,
}

/// The time on `clock`, ns.
pub fn clock_ns(clock: Clock) -> u64 {
    let id = match clock {
        Clock::Monotonic => libc::CLOCK_MONOTONIC,
        Clock::Realtime => libc::CLOCK_REALTIME,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; both clocks exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether this process may execute `path` (`access(2)` with X_OK).
pub fn is_executable(path: &CStr) -> bool {
    // SAFETY: path is a valid NUL-terminated string.
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}

/// Mounts tracefs at `target`.
pub fn mount_tracefs(target: &CStr) -> io::Result<()> {
    // SAFETY: mount(2) with NUL-terminated strings and no data.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `signal` to process `pid`.
pub fn kill(pid: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

/// Waits for child `pid` to end, retrying when a signal interrupts.
pub fn wait(pid: libc::pid_t) -> io::Result<Ended> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into a local we own.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        Ended::Code(libc::WEXITSTATUS(status))
    } else {
        Ended::Signal(libc::WTERMSIG(status))
    })
}

/// A child forked by [`fork_exec_on_go`]: its pid and the parent's ends of
/// the two pipes.
pub struct Forked {
    pub pid: libc::pid_t,
    /// Write one byte to let the child exec; close to make it exit 127.
    pub go: File,
    /// Closes when the exec succeeded; holds the errno (4 bytes) if it failed.
    pub exec_error: File,
}

/// Forks a child that waits for a byte on a pipe (exiting 127 if the pipe
/// closes first), resets SIGINT and SIGTERM to their defaults, and execs
/// `path` with `argv` and `envp`. An exec failure's errno comes back
/// through the `exec_error` pipe.
pub fn fork_exec_on_go(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Result<Forked> {
    // Everything the child uses is made before fork: after it, only
    // async-signal-safe calls are allowed.
    let pointers = |strings: &[CString]| -> Vec<*const libc::c_char> {
        strings
            .iter()
            .map(|s| s.as_ptr())
            .chain([std::ptr::null()])
            .collect()
    };
    let (argv_ptrs, envp_ptrs) = (pointers(argv), pointers(envp));
    // Both pipes are close-on-exec (std makes them so).
    let (go_read, go_write) = io::pipe()?;
    let (err_read, err_write) = io::pipe()?;
    let fds: [RawFd; 4] = [
        go_read.as_raw_fd(),
        go_write.as_raw_fd(),
        err_read.as_raw_fd(),
        err_write.as_raw_fd(),
    ];
    // SAFETY: the child runs only async-signal-safe calls (close, signal,
    // read, execve, write, _exit) on values prepared above, then execs or exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let [go_r, go_w, err_r, err_w] = fds;
        // SAFETY: see the fork above; the pointers stay valid in the child's
        // copy of this stack frame until execve or _exit.
        unsafe {
            // Our copy of the write end would keep the go pipe open forever.
            libc::close(go_w);
            libc::close(err_r);
            // Default signal handling for the command, whatever sofa installed.
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            let mut byte = 0u8;
            if libc::read(go_r, (&mut byte as *mut u8).cast(), 1) != 1 {
                libc::_exit(127);
            }
            libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            let bytes = (*libc::__errno_location()).to_ne_bytes();
            libc::write(err_w, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127);
        }
    }
    // The child's ends close here, in the parent.
    drop((go_read, err_write));
    Ok(Forked {
        pid,
        go: File::from(OwnedFd::from(go_write)),
        exec_error: File::from(OwnedFd::from(err_read)),
    })
}

/// Who sent a signal, from its `siginfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sender {
    /// `si_code`: `SI_KERNEL` (128) for a terminal's Ctrl-C or hangup,
    /// `SI_USER` (0) for `kill()`.
    pub code: i32,
    /// The sending process for `kill()`, else 0.
    pub pid: i32,
}

impl Sender {
    /// Sent by the kernel itself, as a terminal's signals are: to the whole
    /// foreground process group at once.
    pub fn is_kernel(self) -> bool {
        self.code == libc::SI_KERNEL
    }
}

/// What [`on_signals`] calls; set once.
static ON_SIGNAL: std::sync::OnceLock<fn(libc::c_int, Sender)> = std::sync::OnceLock::new();

extern "C" fn trampoline(signal: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: an SA_SIGINFO handler gets a valid siginfo from the kernel;
    // si_pid is meaningful for kill() and 0 (zeroed) otherwise.
    let sender = unsafe {
        Sender {
            code: (*info).si_code,
            pid: (*info).si_pid(),
        }
    };
    if let Some(handler) = ON_SIGNAL.get() {
        handler(signal, sender);
    }
}

/// Calls `handler` with the sender for each of `signals` from now on,
/// restarting interrupted system calls. `handler` runs in a signal handler:
/// it may only make async-signal-safe calls ([`kill_from_handler`],
/// [`write_stderr`], atomics). Set once; later calls keep the first handler.
pub fn on_signals(signals: &[libc::c_int], handler: fn(libc::c_int, Sender)) {
    let _ = ON_SIGNAL.set(handler);
    for &signal in signals {
        // SAFETY: sigaction is plain data (all zeroes is valid); the
        // trampoline only reads the siginfo and calls the handler, which
        // the caller promises is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = trampoline as *const () as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// `kill(2)` for signal handlers: async-signal-safe, result ignored.
pub fn kill_from_handler(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill is async-signal-safe and takes plain integers.
    unsafe { libc::kill(pid, signal) };
}

/// Writes `message` to stderr with one `write(2)`: async-signal-safe.
pub fn write_stderr(message: &[u8]) {
    // SAFETY: write reads message.len() bytes from a live slice.
    unsafe { libc::write(libc::STDERR_FILENO, message.as_ptr().cast(), message.len()) };
}

/// A raw socket receiving every frame of every interface (AF_PACKET,
/// ETH_P_ALL), close-on-exec.
pub fn packet_socket() -> io::Result<OwnedFd> {
    let protocol = (libc::ETH_P_ALL as u16).to_be() as libc::c_int;
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a socket just opened and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sets the receive buffer of `socket` to `bytes`, beyond the system limit
/// where allowed (root), else up to it.
pub fn set_receive_buffer(socket: &OwnedFd, bytes: libc::c_int) {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let value = (&bytes as *const libc::c_int).cast();
    let fd = socket.as_raw_fd();
    // SAFETY: setsockopt reads an int from a local for `len` bytes.
    unsafe {
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value, len) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, value, len);
        }
    }
}

/// The name of network interface `index`.
pub fn interface_name(index: i32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has the IF_NAMESIZE bytes if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index as u32, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// A frame read from a packet socket.
pub struct Frame {
    /// Its full length (only `buf.len()` bytes of it were copied).
    pub len: usize,
    pub ifindex: i32,
    /// PACKET_HOST, PACKET_OUTGOING, ...
    pub pkttype: u8,
}

/// Reads the next queued frame into `buf` without blocking; `None` when
/// none is queued (or the read was interrupted).
pub fn receive_frame(socket: &OwnedFd, buf: &mut [u8]) -> Option<Frame> {
    // SAFETY: sockaddr_ll is plain data: all zeroes is valid.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut addr_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: recvfrom writes at most buf.len() bytes into buf and at most
    // addr_len bytes into addr, both ours. MSG_TRUNC: the frame's real
    // length, though only buf.len() bytes are copied.
    let n = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            (&mut addr as *mut libc::sockaddr_ll).cast(),
            &mut addr_len,
        )
    };
    (n >= 0).then_some(Frame {
        len: n as usize,
        ifindex: addr.sll_ifindex,
        pkttype: addr.sll_pkttype,
    })
}

/// Maps `file` read-only. Only for files that are parsed, not trusted:
/// another process truncating the file while it is mapped would make
/// reading it fault, which is why binaries are read after the run, when
/// nothing should be rewriting them.
pub fn map_readonly(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: a private read-only mapping; see the doc comment for the one
    // hazard (concurrent truncation) and why it does not arise here.
    unsafe { memmap2::Mmap::map(file) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn host_facts() {
        assert!(online_cpus() >= 1);
        assert!(clock_ticks_per_second() >= 1);
        assert!(page_size() >= 4096);
        let u = uname().unwrap();
        assert!(!u.release.is_empty());
        let a = clock_ns(Clock::Monotonic);
        assert!(clock_ns(Clock::Monotonic) >= a);
        assert!(clock_ns(Clock::Realtime) > 1_600_000_000 * 1_000_000_000);
        assert!(is_executable(c"/bin/sh"));
        // A file without execute bits (which even root may not execute).
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = CString::new(file.path().to_str().unwrap()).unwrap();
        assert!(!is_executable(&path));
    }

    #[test]
    fn a_forked_child_waits_for_go_and_reports_exec_errors() {
        let argv = [
            CString::new("sh").unwrap(),
            CString::new("-c").unwrap(),
            CString::new("exit 7").unwrap(),
        ];
        let mut child = fork_exec_on_go(c"/bin/sh", &argv, &[]).unwrap();
        child.go.write_all(&[1]).unwrap();
        drop(child.go);
        let mut errno = Vec::new();
        child.exec_error.read_to_end(&mut errno).unwrap();
        assert!(errno.is_empty(), "exec succeeded");
        assert_eq!(wait(child.pid).unwrap(), Ended::Code(7));

        let mut missing = fork_exec_on_go(c"/no/such/program", &argv, &[]).unwrap();
        missing.go.write_all(&[1]).unwrap();
        let mut errno = Vec::new();
        missing.exec_error.read_to_end(&mut errno).unwrap();
        assert_eq!(i32::from_ne_bytes(errno.try_into().unwrap()), libc::ENOENT);
        assert_eq!(wait(missing.pid).unwrap(), Ended::Code(127));

        // Never released: the child exits when the go pipe closes.
        let dropped = fork_exec_on_go(c"/bin/sh", &argv, &[]).unwrap();
        let pid = dropped.pid;
        drop(dropped);
        assert_eq!(wait(pid).unwrap(), Ended::Code(127));
    }
}
