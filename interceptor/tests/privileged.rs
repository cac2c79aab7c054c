//! Privileged fanotify tests, on a tmpfs in a private mount namespace.
//!
//! Every test that marks anything comes in two halves:
//! - the **outer** test (`allow_path`, ...) re-execs this test binary under
//!   `timeout 60 unshare -m --propagation private`, running only its inner
//!   half, with `PORTCULLIS_FANOTIFY_INNER=1`;
//! - the **inner** test (`inner_allow_path`, ..., `#[ignore]`d so a plain
//!   `cargo test` never runs it directly) refuses to run without that
//!   variable or outside a private mount namespace, mounts a tmpfs under a
//!   temp dir (visible only in that namespace), checks in
//!   `/proc/self/mountinfo` that it is a private tmpfs, and marks only that
//!   mount.
//!
//! Openers are child processes (`cat`, `sh -c`, a copied `true`) run under
//! `timeout 10`; this process' own accesses are answered by the reader
//! itself. Without root or fanotify permission support the outer tests
//! print `SKIPPED: <reason>` and pass.

#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use portcullis_interceptor::{
    mountinfo, procfs, sandbox, spawn_reader, Fanotify, GroupClass, InterceptError, Intercepted,
    MarkScope, ReaderHandle, ReaderMsg, Watch,
};
use portcullis_schemas::AccessKind;

const INNER_ENV: &str = "PORTCULLIS_FANOTIFY_INNER";
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

const OPEN: Watch = Watch {
    open: true,
    exec: false,
    close_write: false,
};

// ------------------------------------------------------------------ harness

fn skip_reason() -> Option<String> {
    if let Err(why) = sandbox::fanotify_permission_available() {
        return Some(why);
    }
    for tool in ["unshare", "timeout", "cat", "sh"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// The outer half: run `inner` alone in a private mount namespace.
fn run_in_private_namespace(inner: &str) {
    if let Some(why) = skip_reason() {
        eprintln!("\n!!!!!!!! SKIPPED: {inner}: {why} !!!!!!!!\n");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("timeout")
        .args(["-k", "5", "60", "unshare", "-m", "--propagation", "private"])
        .arg(&exe)
        .args([
            "--exact",
            inner,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("---- {inner} stdout ----\n{stdout}---- {inner} stderr ----\n{stderr}");
    assert!(out.status.success(), "{inner} failed: {:?}", out.status);
    assert!(
        stdout.contains("1 passed"),
        "{inner} did not run exactly one test"
    );
}

/// A private tmpfs, mounted only in this (private) mount namespace.
struct Sandbox {
    mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    /// `None` (and a note) when not started by the outer half.
    fn enter() -> Option<Self> {
        if std::env::var_os(INNER_ENV).is_none() {
            eprintln!(
                "inner test: runs only through its outer test (in a private mount namespace)"
            );
            return None;
        }
        // Our parent is `timeout`, still in the original mount namespace.
        let ours = fs::read_link("/proc/self/ns/mnt").unwrap();
        let parent = fs::read_link(format!(
            "/proc/{}/ns/mnt",
            std::os::unix::process::parent_id()
        ))
        .unwrap();
        assert_ne!(
            ours, parent,
            "refusing to mount or mark: not in a private mount namespace"
        );
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        sandbox::mount_tmpfs(&mnt, 256 << 20).unwrap();
        let mnt = fs::canonicalize(&mnt).unwrap();
        let entry = mountinfo::find(&mnt)
            .unwrap()
            .expect("the tmpfs is a mount point");
        assert_eq!(entry.fstype, "tmpfs", "{entry:?}");
        assert!(
            !entry.is_shared(),
            "the tmpfs must not propagate: {entry:?}"
        );
        Some(Self { mnt, _dir: dir })
    }

    fn path(&self, name: impl AsRef<Path>) -> PathBuf {
        self.mnt.join(name)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// A group with its reader, delivering into a channel (never blocks).
struct Group {
    fan: Arc<Fanotify>,
    rx: Receiver<ReaderMsg>,
    reader: Option<ReaderHandle>,
}

impl Group {
    fn start(class: GroupClass, sb: &Sandbox, scope: MarkScope, watch: Watch) -> Self {
        let fan = Fanotify::init(class).unwrap();
        assert_eq!(fan.class(), class);
        let (tx, rx) = crossbeam_channel::unbounded();
        let reader = spawn_reader(
            Arc::clone(&fan),
            std::process::id(),
            Box::new(move |msg| {
                let _ = tx.send(msg);
            }),
        )
        .unwrap();
        let entry = mountinfo::find(&sb.mnt).unwrap().unwrap();
        assert_eq!(entry.fstype, "tmpfs");
        fan.mark(&sb.mnt, scope, watch, false).unwrap();
        Self {
            fan,
            rx,
            reader: Some(reader),
        }
    }

    fn next(&self) -> Intercepted {
        match self.rx.recv_timeout(EVENT_TIMEOUT) {
            Ok(ReaderMsg::Event(ev)) => ev,
            Ok(ReaderMsg::Overflow) => panic!("unexpected queue overflow"),
            Err(e) => panic!("no fanotify event within {EVENT_TIMEOUT:?}: {e}"),
        }
    }

    fn assert_quiet(&self) {
        match self.rx.try_recv() {
            Ok(ReaderMsg::Event(ev)) => panic!(
                "unexpected event: {:?} pid {} {:?}",
                ev.kind,
                ev.pid,
                procfs::file_info(ev.ticket.fd().as_fd())
            ),
            Ok(ReaderMsg::Overflow) => panic!("unexpected overflow"),
            Err(_) => {}
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(r) = self.reader.take() {
            r.stop();
        }
    }
}

/// `timeout 10 <args...>` with piped output.
fn spawn<S: AsRef<OsStr>>(args: &[S]) -> Child {
    Command::new("timeout")
        .arg("10")
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn cat(path: &Path) -> Child {
    spawn(&[OsStr::new("cat"), path.as_os_str()])
}

fn finish(child: Child) -> Output {
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn write_file(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap();
}

/// Read the content through the event fd (never by reopening the path).
fn read_through(ev: &Intercepted) -> Vec<u8> {
    let file = fs::File::from(ev.ticket.fd().try_clone().unwrap());
    let mut buf = vec![0u8; 4096];
    let n = file.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

// ------------------------------------------------------------- allow / deny

#[test]
fn allow_path() {
    run_in_private_namespace("inner_allow_path");
}

#[test]
#[ignore = "inner half of allow_path"]
fn inner_allow_path() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(GroupClass::Permission, &sb, MarkScope::Mount, OPEN);
    let file = sb.path("hello.txt");
    write_file(&file, b"hello portcullis\n");

    let child = cat(&file);
    let ev = g.next();
    assert_eq!(ev.kind, AccessKind::Open);
    assert!(ev.ticket.needs_response());
    assert_ne!(ev.pid, std::process::id());
    // The opener is alive and waiting: procfs sees it.
    let proc = procfs::process_info(ev.pid);
    assert_eq!(proc.command.as_deref(), Some("cat"));
    assert_eq!(proc.ppid, child.id(), "cat is the child of `timeout`");
    assert_eq!(
        proc.executable.map(|e| e.file_name().to_vec()),
        Some(b"cat".to_vec())
    );
    assert_eq!(
        procfs::container_of(ev.pid),
        procfs::container_of(std::process::id())
    );
    let info = procfs::file_info(ev.ticket.fd().as_fd()).unwrap();
    assert_eq!(info.path.to_path_buf(), file);
    assert_eq!(info.size, 17);
    assert_eq!(info.inode, fs::metadata(&file).unwrap().ino());
    assert_eq!(read_through(&ev), b"hello portcullis\n");
    assert!(ev.received.elapsed() < EVENT_TIMEOUT);
    ev.ticket.answer(true).unwrap();

    let out = finish(child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello portcullis\n");
    g.assert_quiet();
}

#[test]
fn deny_path() {
    run_in_private_namespace("inner_deny_path");
}

#[test]
#[ignore = "inner half of deny_path"]
fn inner_deny_path() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(GroupClass::Permission, &sb, MarkScope::Mount, OPEN);
    let file = sb.path("eicar.txt");
    write_file(&file, b"bad\n");

    let child = cat(&file);
    let ev = g.next();
    assert_eq!(ev.kind, AccessKind::Open);
    ev.ticket.answer(false).unwrap();
    let out = finish(child);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn filesystem_scope() {
    run_in_private_namespace("inner_filesystem_scope");
}

#[test]
#[ignore = "inner half of filesystem_scope"]
fn inner_filesystem_scope() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(GroupClass::Permission, &sb, MarkScope::Filesystem, OPEN);
    let file = sb.path("f");
    write_file(&file, b"x");
    let child = cat(&file);
    let ev = g.next();
    ev.ticket.answer(false).unwrap();
    let out = finish(child);
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

// --------------------------------------------------------------------- exec

/// Exec the file under `timeout 10`, answering every event (exec events
/// with `allow`, plain opens with ALLOW); with `cache`, the exec event's
/// inode gets an ignore mark first. Returns the output and the events seen.
fn run_exec(g: &Group, exe: &Path, allow: bool, cache: bool) -> (Output, Vec<(AccessKind, u64)>) {
    let mut child = spawn(&[exe.as_os_str()]);
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "exec did not finish; saw {seen:x?}"
        );
        match g.rx.recv_timeout(Duration::from_millis(100)) {
            Ok(ReaderMsg::Event(ev)) => {
                let is_exec = ev.kind == AccessKind::Exec;
                seen.push((ev.kind, ev.ticket.mask()));
                if cache && is_exec {
                    g.fan.ignore_until_modified(ev.ticket.fd().as_fd()).unwrap();
                }
                ev.ticket.answer(allow || !is_exec).unwrap();
            }
            Ok(ReaderMsg::Overflow) => panic!("overflow"),
            Err(RecvTimeoutError::Timeout) => {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    (finish(child), seen)
}

fn exec_case(allow: bool) {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(
        GroupClass::Permission,
        &sb,
        MarkScope::Mount,
        Watch {
            open: true,
            exec: true,
            close_write: false,
        },
    );
    let exe = sb.path("true-copy");
    fs::copy("/bin/true", &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    g.assert_quiet();

    let (out, seen) = run_exec(&g, &exe, allow, false);
    eprintln!("exec (allow={allow}) produced events (kind, mask): {seen:x?}");
    assert_eq!(
        seen.first().map(|s| s.0),
        Some(AccessKind::Exec),
        "{seen:x?}"
    );
    if !allow {
        assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("Operation not permitted"),
            "{}",
            stderr(&out)
        );
        return;
    }
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));

    // Verdict cache for executables: the ignore mark covers both the exec
    // and the open permission events.
    let (out, seen) = run_exec(&g, &exe, true, true);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("exec with the ignore mark added on the exec event: {seen:x?}");
    let (out, seen) = run_exec(&g, &exe, true, false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        seen.is_empty(),
        "cached executable still intercepted: {seen:x?}"
    );
}

#[test]
fn exec_allowed() {
    run_in_private_namespace("inner_exec_allowed");
}

#[test]
#[ignore = "inner half of exec_allowed"]
fn inner_exec_allowed() {
    exec_case(true);
}

#[test]
fn exec_denied() {
    run_in_private_namespace("inner_exec_denied");
}

#[test]
#[ignore = "inner half of exec_denied"]
fn inner_exec_denied() {
    exec_case(false);
}

// ------------------------------------------------------------------ own pid

#[test]
fn own_pid_auto_allowed() {
    run_in_private_namespace("inner_own_pid_auto_allowed");
}

#[test]
#[ignore = "inner half of own_pid_auto_allowed"]
fn inner_own_pid_auto_allowed() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(GroupClass::Permission, &sb, MarkScope::Mount, OPEN);
    let file = sb.path("mine");
    // Our own opens: nobody answers from the sink, the reader does.
    let (tx, rx) = crossbeam_channel::bounded(1);
    let f2 = file.clone();
    std::thread::spawn(move || {
        fs::write(&f2, b"own").unwrap();
        let _ = tx.send(fs::read(&f2).unwrap());
    });
    let got = rx
        .recv_timeout(EVENT_TIMEOUT)
        .expect("our own open hung: own pid not auto-allowed");
    assert_eq!(got, b"own");
    g.assert_quiet();

    // The mark is live for everyone else.
    let child = cat(&file);
    let ev = g.next();
    assert_ne!(ev.pid, std::process::id());
    ev.ticket.answer(true).unwrap();
    assert_eq!(finish(child).stdout, b"own");
}

// --------------------------------------------------------- verdict cache

#[test]
fn ignore_until_modified() {
    run_in_private_namespace("inner_ignore_until_modified");
}

#[test]
#[ignore = "inner half of ignore_until_modified"]
fn inner_ignore_until_modified() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(GroupClass::Permission, &sb, MarkScope::Mount, OPEN);
    let file = sb.path("cached");
    write_file(&file, b"v1");

    let child = cat(&file);
    let ev = g.next();
    g.fan.ignore_until_modified(ev.ticket.fd().as_fd()).unwrap();
    ev.ticket.answer(true).unwrap();
    assert_eq!(finish(child).stdout, b"v1");

    // Unchanged: the inode's ignore mark suppresses the mount mark's event,
    // so cat completes without anyone answering.
    for _ in 0..3 {
        let out = finish(cat(&file));
        assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
        assert_eq!(out.stdout, b"v1");
    }
    g.assert_quiet();

    // Modified (by us: our open is ignored/auto-allowed, the write clears
    // the ignore mask): events come back.
    let mut f = fs::OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(b"v2").unwrap();
    drop(f);
    let child = cat(&file);
    let ev = g.next();
    assert_eq!(ev.kind, AccessKind::Open);
    ev.ticket.answer(true).unwrap();
    assert_eq!(finish(child).stdout, b"v1v2");

    // Still not cached (nobody re-added the ignore mark).
    let child = cat(&file);
    g.next().ticket.answer(true).unwrap();
    assert!(finish(child).status.success());

    // Cached again, then modified by someone else (a truncating writer).
    let child = cat(&file);
    let ev = g.next();
    g.fan.ignore_until_modified(ev.ticket.fd().as_fd()).unwrap();
    ev.ticket.answer(true).unwrap();
    finish(child);
    let writer = spawn(&[
        "sh",
        "-c",
        format!("printf v3 > '{}'", file.display()).as_str(),
    ]);
    // The writer's open is still ignored (not modified yet): no event.
    let out = finish(writer);
    assert!(out.status.success(), "{}", stderr(&out));
    g.assert_quiet();
    let child = cat(&file);
    let ev = g.next();
    // remove_ignore takes the cache entry back without any modification.
    g.fan.ignore_until_modified(ev.ticket.fd().as_fd()).unwrap();
    g.fan.remove_ignore(ev.ticket.fd().as_fd()).unwrap();
    ev.ticket.answer(true).unwrap();
    assert_eq!(finish(child).stdout, b"v3");
    let child = cat(&file);
    let ev = g.next();
    assert_eq!(ev.kind, AccessKind::Open);
    ev.ticket.answer(true).unwrap();
    assert!(finish(child).status.success());
}

// ------------------------------------------------------------ non-UTF-8

#[test]
fn non_utf8_names() {
    run_in_private_namespace("inner_non_utf8_names");
}

#[test]
#[ignore = "inner half of non_utf8_names"]
fn inner_non_utf8_names() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(GroupClass::Permission, &sb, MarkScope::Mount, OPEN);
    let name = OsStr::from_bytes(b"caf\xe9 \xff\xfe)(.bin");
    let file = sb.path(name);
    write_file(&file, b"bytes");

    let child = cat(&file);
    let ev = g.next();
    let info = procfs::file_info(ev.ticket.fd().as_fd()).unwrap();
    ev.ticket.answer(true).unwrap();
    assert_eq!(info.path.as_bytes(), file.as_os_str().as_bytes());
    assert!(!info.path.is_utf8());
    assert_eq!(info.path.file_name(), name.as_bytes());
    eprintln!("reported path: {}", info.path);
    assert_eq!(finish(child).stdout, b"bytes");
}

// ---------------------------------------------------------- ticket drop

#[test]
fn ticket_drop_answers_fallback() {
    run_in_private_namespace("inner_ticket_drop_answers_fallback");
}

#[test]
#[ignore = "inner half of ticket_drop_answers_fallback"]
fn inner_ticket_drop_answers_fallback() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(GroupClass::Permission, &sb, MarkScope::Mount, OPEN);
    let file = sb.path("f");
    write_file(&file, b"data");

    let child = cat(&file);
    let mut ticket = g.next().ticket;
    ticket.set_fallback(false);
    drop(ticket);
    let out = finish(child);
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );

    let child = cat(&file);
    drop(g.next()); // default fallback: allow
    let out = finish(child);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"data");
}

// ----------------------------------------------------------- reader stop

/// No mark at all: safe outside a private namespace.
#[test]
fn reader_stop_joins_promptly() {
    if let Err(why) = sandbox::fanotify_permission_available() {
        eprintln!("\n!!!!!!!! SKIPPED: reader_stop_joins_promptly: {why} !!!!!!!!\n");
        return;
    }
    let fan = Fanotify::init(GroupClass::Permission).unwrap();
    let reader = spawn_reader(Arc::clone(&fan), std::process::id(), Box::new(|_| {})).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    reader.stop();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );

    // Dropping the handle stops it too.
    let reader = spawn_reader(fan, std::process::id(), Box::new(|_| {})).unwrap();
    let t = Instant::now();
    drop(reader);
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[test]
fn reader_stop_with_pending_events() {
    run_in_private_namespace("inner_reader_stop_with_pending_events");
}

#[test]
#[ignore = "inner half of reader_stop_with_pending_events"]
fn inner_reader_stop_with_pending_events() {
    let Some(sb) = Sandbox::enter() else { return };
    let mut g = Group::start(GroupClass::Permission, &sb, MarkScope::Mount, OPEN);
    let file = sb.path("f");
    write_file(&file, b"late");
    let child = cat(&file);
    let ev = g.next();
    let t = Instant::now();
    g.reader.take().unwrap().stop();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
    // The ticket outlives the reader: the group fd is still open.
    ev.ticket.answer(true).unwrap();
    assert_eq!(finish(child).stdout, b"late");
}

// ---------------------------------------------------------- notification

#[test]
fn notification_class() {
    run_in_private_namespace("inner_notification_class");
}

#[test]
#[ignore = "inner half of notification_class"]
fn inner_notification_class() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(
        GroupClass::Notification,
        &sb,
        MarkScope::Mount,
        Watch {
            open: true,
            exec: false,
            close_write: true,
        },
    );
    let file = sb.path("audit");
    // Nobody answers anything: the opener must not wait.
    let script = format!("printf hi > '{0}' && cat '{0}'", file.display());
    let out = finish(spawn(&["sh", "-c", script.as_str()]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, b"hi");

    let mut kinds = Vec::new();
    while let Ok(msg) = g.rx.recv_timeout(Duration::from_millis(500)) {
        let ReaderMsg::Event(ev) = msg else {
            panic!("overflow")
        };
        assert!(!ev.ticket.needs_response());
        assert_eq!(
            procfs::file_info(ev.ticket.fd().as_fd())
                .unwrap()
                .path
                .to_path_buf(),
            file
        );
        kinds.push((ev.kind, ev.ticket.mask()));
        ev.ticket.answer(false).unwrap(); // a no-op for notifications
    }
    eprintln!("notification events (kind, mask): {kinds:x?}");
    assert!(
        kinds.iter().any(|(k, _)| *k == AccessKind::Open),
        "{kinds:?}"
    );
    assert!(
        kinds.iter().any(|(k, _)| *k == AccessKind::CloseWrite),
        "{kinds:?}"
    );
}

// ---------------------------------------------------------- close_write

#[test]
fn close_write_events() {
    run_in_private_namespace("inner_close_write_events");
}

#[test]
#[ignore = "inner half of close_write_events"]
fn inner_close_write_events() {
    let Some(sb) = Sandbox::enter() else { return };
    let g = Group::start(
        GroupClass::Permission,
        &sb,
        MarkScope::Mount,
        Watch {
            open: true,
            exec: false,
            close_write: true,
        },
    );
    let file = sb.path("written");
    let script = format!("printf data > '{}'", file.display());
    let child = spawn(&["sh", "-c", script.as_str()]);
    let open = g.next();
    assert_eq!(open.kind, AccessKind::Open);
    assert!(open.ticket.needs_response());
    let writer = open.pid;
    open.ticket.answer(true).unwrap();

    let close = g.next();
    assert_eq!(close.kind, AccessKind::CloseWrite);
    assert!(!close.ticket.needs_response());
    assert_eq!(close.pid, writer);
    let info = procfs::file_info(close.ticket.fd().as_fd()).unwrap();
    assert_eq!(info.size, 4);
    assert_eq!(read_through(&close), b"data");
    // The writer closed; its write count drops just after the event is
    // queued (__fput), so allow a moment.
    let first = procfs::is_last_writer(close.ticket.fd().as_fd());
    let t = Instant::now();
    while !procfs::is_last_writer(close.ticket.fd().as_fd()) {
        assert!(t.elapsed() < Duration::from_secs(1), "writer still counted");
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("is_last_writer at CLOSE_WRITE read time: {first}");
    close.ticket.answer(true).unwrap();
    assert!(finish(child).status.success());

    // A read-only open closes without CLOSE_WRITE.
    let child = cat(&file);
    g.next().ticket.answer(true).unwrap();
    assert!(finish(child).status.success());
    std::thread::sleep(Duration::from_millis(200));
    g.assert_quiet();
}

// ------------------------------------------------------------ overflow

#[test]
fn kernel_queue_overflow() {
    run_in_private_namespace("inner_kernel_queue_overflow");
}

#[test]
#[ignore = "inner half of kernel_queue_overflow"]
fn inner_kernel_queue_overflow() {
    let Some(sb) = Sandbox::enter() else { return };
    let max: u64 = fs::read_to_string("/proc/sys/fs/fanotify/max_queued_events")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if max > 100_000 {
        eprintln!("SKIPPED: max_queued_events is {max}; too many files to create");
        return;
    }
    let dir = sb.path("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..max + 64 {
        fs::File::create(dir.join(format!("{i}"))).unwrap();
    }
    // Notification class, nobody reading yet: the queue fills and overflows.
    let fan = Fanotify::init(GroupClass::Notification).unwrap();
    fan.mark(&sb.mnt, MarkScope::Mount, OPEN, false).unwrap();
    let out = Command::new("timeout")
        .args(["60", "sh", "-c"])
        .arg(format!(
            "find '{}' -type f -exec cat {{}} + > /dev/null",
            dir.display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let events = Arc::new(AtomicU64::new(0));
    let overflows = Arc::new(AtomicU64::new(0));
    let (e, o) = (Arc::clone(&events), Arc::clone(&overflows));
    let reader = spawn_reader(
        Arc::clone(&fan),
        std::process::id(),
        Box::new(move |msg| match msg {
            ReaderMsg::Event(_) => {
                e.fetch_add(1, Ordering::Relaxed);
            }
            ReaderMsg::Overflow => {
                o.fetch_add(1, Ordering::Relaxed);
            }
        }),
    )
    .unwrap();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while overflows.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    reader.stop();
    let (n, ov) = (
        events.load(Ordering::Relaxed),
        overflows.load(Ordering::Relaxed),
    );
    eprintln!("max_queued_events {max}: read {n} events and {ov} overflow(s)");
    assert_eq!(ov, 1);
    assert_eq!(n, max, "the queue holds exactly max_queued_events events");
}

// -------------------------------------------------------------- refusals

#[test]
fn mark_refusals() {
    run_in_private_namespace("inner_mark_refusals");
}

#[test]
#[ignore = "inner half of mark_refusals"]
fn inner_mark_refusals() {
    let Some(sb) = Sandbox::enter() else { return };
    // Notification class: even a bug here could not block anything.
    let fan = Fanotify::init(GroupClass::Notification).unwrap();
    let none = Watch {
        open: false,
        exec: false,
        close_write: false,
    };
    let err = fan
        .mark(&sb.mnt, MarkScope::Mount, none, false)
        .unwrap_err();
    assert!(matches!(err, InterceptError::EmptyWatch { .. }), "{err}");

    let sub = sb.path("sub");
    fs::create_dir(&sub).unwrap();
    let err = fan.mark(&sub, MarkScope::Mount, OPEN, false).unwrap_err();
    assert!(
        matches!(err, InterceptError::NotAMountPoint { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&*sub.to_string_lossy()), "{err}");

    let err = fan
        .mark(Path::new("/"), MarkScope::Mount, OPEN, false)
        .unwrap_err();
    assert!(matches!(err, InterceptError::RootRefused { .. }), "{err}");
    let err = fan
        .mark(Path::new("/"), MarkScope::Filesystem, OPEN, false)
        .unwrap_err();
    assert!(matches!(err, InterceptError::RootRefused { .. }), "{err}");

    // A bind mount of the root filesystem is a mount point, but its
    // filesystem is the root's: Filesystem scope is refused.
    let bind = sb.path("rootbind");
    fs::create_dir(&bind).unwrap();
    nix::mount::mount(
        Some("/"),
        &bind,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .unwrap();
    let err = fan
        .mark(&bind, MarkScope::Filesystem, OPEN, false)
        .unwrap_err();
    assert!(matches!(err, InterceptError::RootRefused { .. }), "{err}");
    nix::mount::umount2(&bind, nix::mount::MntFlags::MNT_DETACH).unwrap();

    let err = fan
        .mark(&sb.path("missing"), MarkScope::Mount, OPEN, false)
        .unwrap_err();
    assert!(matches!(err, InterceptError::Resolve { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
}
