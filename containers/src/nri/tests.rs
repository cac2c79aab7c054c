//! The plugin against a scripted runtime: registration, configuration,
//! synchronization and a container start, over a real Unix socket.

use super::*;
use crate::protect::{ContainerEvent, ProtectorConfig};
use crate::registry::Registry;
use portcullis_interceptor::{Fanotify, GroupClass, Watch};
use std::io::Write as _;
use std::os::unix::net::UnixListener;

/// The runtime's side of one connection.
struct FakeRuntime {
    stream: UnixStream,
    demux: Demux,
    next_stream: u32,
}

impl FakeRuntime {
    fn recv(&mut self) -> Message {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(m) = self.demux.next_message().unwrap() {
                return m;
            }
            assert!(Instant::now() < deadline, "the plugin did not answer");
            self.demux.fill(&mut self.stream).unwrap();
        }
    }

    /// Answers the plugin's registration (request `stream`) with `status`.
    fn answer_registration(&mut self, stream: u32, status: api::Status) {
        let answer = api::Response {
            status: Some(status),
            payload: Vec::new(),
        };
        wire::send(
            &mut self.stream,
            &Message {
                conn: RUNTIME_CONN,
                stream,
                kind: TYPE_RESPONSE,
                flags: 0,
                payload: answer.encode_to_vec(),
            },
        )
        .unwrap();
    }

    /// Calls the plugin's `method` and returns its answer.
    fn call(&mut self, method: &str, payload: Vec<u8>) -> api::Response {
        let id = self.next_stream;
        self.next_stream += 2;
        let req = api::Request {
            service: api::PLUGIN_SERVICE.into(),
            method: method.into(),
            payload,
            timeout_nano: 2_000_000_000,
        };
        wire::send(
            &mut self.stream,
            &Message {
                conn: PLUGIN_CONN,
                stream: id,
                kind: TYPE_REQUEST,
                flags: 0,
                payload: req.encode_to_vec(),
            },
        )
        .unwrap();
        let m = self.recv();
        assert_eq!((m.conn, m.stream, m.kind), (PLUGIN_CONN, id, TYPE_RESPONSE));
        api::Response::decode(m.payload.as_slice()).unwrap()
    }
}

type Events = Arc<parking_lot::Mutex<Vec<ContainerEvent>>>;

/// A protector on a notification group (no container is ever marked by
/// these tests: this process is not one), recording its events.
fn protector() -> (Arc<Protector>, Events) {
    let fan = Fanotify::init(GroupClass::Notification).unwrap();
    let events: Events = Arc::default();
    let seen = events.clone();
    let protector = Protector::start(
        fan,
        ProtectorConfig {
            watch: Watch {
                open: true,
                exec: true,
                close_write: false,
            },
            volumes: false,
            refused_devices: Vec::new(),
            metadata_timeout: Duration::from_secs(1),
            rescan: Duration::from_secs(60),
            watch_mounts: false,
            gone_capacity: 8,
            skip: crate::SkipRules::default(),
        },
        Arc::new(Registry::new(8)),
        Vec::new(),
        Arc::new(move |e| seen.lock().push(e)),
    )
    .unwrap();
    (protector, events)
}

/// The plugin's thread dialing a socket the test listens on.
struct Plugin {
    _dir: tempfile::TempDir,
    listener: UnixListener,
    events: Events,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Plugin {
    /// `None` (after a loud line) when not root: a fanotify group needs it.
    fn start(test: &str, index: &str, retry: Duration) -> Option<Plugin> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIPPED: nri::tests::{test} needs root (a fanotify group)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("nri.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let (protector, events) = protector();
        let stop = Arc::new(AtomicBool::new(false));
        let config = NriConfig {
            socket,
            name: "portcullis".into(),
            index: index.into(),
            runtime: ContainerRuntime::Containerd,
            retry,
        };
        let thread = spawn(config, protector, stop.clone()).unwrap();
        Some(Plugin {
            _dir: dir,
            listener,
            events,
            stop,
            thread,
        })
    }

    /// The plugin's next connection, as the runtime sees it.
    fn accept(&self) -> FakeRuntime {
        let (stream, _) = self.listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        FakeRuntime {
            stream,
            demux: Demux::default(),
            next_stream: 1,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

fn pod() -> api::PodSandbox {
    api::PodSandbox {
        id: "p1".into(),
        name: "web-0".into(),
        uid: "u-1".into(),
        namespace: "shop".into(),
        labels: [("app".to_string(), "web".to_string())].into(),
        annotations: HashMap::new(),
    }
}

fn container(id: &str, pid: u32) -> api::Container {
    api::Container {
        id: id.into(),
        pod_sandbox_id: "p1".into(),
        name: "nginx".into(),
        state: api::CONTAINER_CREATED,
        labels: [
            ("tier".to_string(), "front".to_string()),
            ("app".to_string(), "shadowed".to_string()),
            (
                "io.kubernetes.container.name".to_string(),
                "nginx".to_string(),
            ),
        ]
        .into(),
        annotations: [(
            "io.kubernetes.cri.image-name".to_string(),
            "docker.io/library/nginx:1.27".to_string(),
        )]
        .into(),
        pid,
        image: None,
    }
}

#[test]
fn meta_comes_from_the_pod_the_container_and_the_cri_annotations() {
    let mut c = container("c1", 1);
    c.image = Some(api::Image {
        name: String::new(),
        digest: "sha256:aa".into(),
        config_digest: "sha256:bb".into(),
    });
    let m = meta_of(Some(&pod()), &c);
    assert_eq!(m.name.as_deref(), Some("nginx"));
    assert_eq!(m.image.as_deref(), Some("docker.io/library/nginx:1.27"));
    assert_eq!(m.image_digest.as_deref(), Some("sha256:aa"));
    let p = m.pod.unwrap();
    assert_eq!(
        (p.name.as_str(), p.namespace.as_str(), p.uid.as_deref()),
        ("web-0", "shop", Some("u-1"))
    );
    assert_eq!(
        m.labels.into_iter().collect::<Vec<_>>(),
        vec![
            ("app".into(), "web".into()),
            ("tier".into(), "front".into())
        ],
        "pod labels win over the container's; io.kubernetes.* are not kept"
    );
}

#[test]
fn subscription_mask_is_one_bit_per_event() {
    assert_eq!(Event::mask(&[Event::StartContainer]), 0x20);
    assert_eq!(Event::mask(&EVENTS), 0x20 | 0x200 | 0x400);
}

#[test]
fn refused_sessions_back_off_and_a_registered_one_resets() {
    let base = Duration::from_secs(1);
    let mut d = base;
    let mut seen = Vec::new();
    for _ in 0..7 {
        d = next_retry(false, d, base);
        seen.push(d.as_secs());
    }
    assert_eq!(seen, vec![2, 4, 8, 16, 30, 30, 30]);
    assert_eq!(next_retry(true, d, base), base);
}

#[test]
fn config_index_must_be_two_digits() {
    let mut c = NriConfig {
        socket: DEFAULT_SOCKET.into(),
        name: "portcullis".into(),
        index: "10".into(),
        runtime: ContainerRuntime::Containerd,
        retry: Duration::from_secs(1),
    };
    assert!(c.validate().is_ok());
    for bad in ["1", "100", "a1", ""] {
        c.index = bad.into();
        let (field, message) = c.validate().unwrap_err();
        assert_eq!(field, "plugin_index");
        assert!(message.contains(bad), "{bad}");
    }
}

#[test]
fn registers_configures_synchronizes_and_answers_a_start() {
    let Some(plugin) = Plugin::start(
        "registers_configures_synchronizes_and_answers_a_start",
        "42",
        Duration::from_millis(50),
    ) else {
        return;
    };
    let mut rt = plugin.accept();
    // Registration, on the runtime's service.
    let m = rt.recv();
    assert_eq!((m.conn, m.stream, m.kind), (RUNTIME_CONN, 1, TYPE_REQUEST));
    let req = api::Request::decode(m.payload.as_slice()).unwrap();
    assert_eq!(
        (req.service.as_str(), req.method.as_str()),
        (api::RUNTIME_SERVICE, "RegisterPlugin")
    );
    let reg = api::RegisterPluginRequest::decode(req.payload.as_slice()).unwrap();
    assert_eq!(
        (reg.plugin_name.as_str(), reg.plugin_idx.as_str()),
        ("portcullis", "42")
    );
    rt.answer_registration(1, api::Status::default());

    let r = rt.call(
        "Configure",
        api::ConfigureRequest {
            runtime_name: "containerd".into(),
            request_timeout: 2000,
            ..Default::default()
        }
        .encode_to_vec(),
    );
    assert_eq!(r.status.map(|s| s.code), Some(api::CODE_OK));
    let conf = api::ConfigureResponse::decode(r.payload.as_slice()).unwrap();
    assert_eq!(conf.events, Event::mask(&EVENTS));

    // A split synchronization: the plugin echoes `more`.
    let me = std::process::id();
    let mut running = container("c0", me);
    running.state = api::CONTAINER_RUNNING;
    for (more, pods, containers) in [(true, vec![pod()], vec![]), (false, vec![], vec![running])] {
        let r = rt.call(
            "Synchronize",
            api::SynchronizeRequest {
                pods,
                containers,
                more,
            }
            .encode_to_vec(),
        );
        let s = api::SynchronizeResponse::decode(r.payload.as_slice()).unwrap();
        assert_eq!(s.more, more);
    }

    // A start: this test process is no container (its root is the host's
    // `/`), so the protector refuses it; the runtime still gets an OK.
    let r = rt.call(
        "StartContainer",
        api::ContainerRequest {
            pod: Some(pod()),
            container: Some(container("c1", me)),
        }
        .encode_to_vec(),
    );
    assert_eq!(r.status.map(|s| s.code), Some(api::CODE_OK));
    // An event not subscribed to is answered, empty.
    let r = rt.call("PostStartContainer", Vec::new());
    assert_eq!(r.status.map(|s| s.code), Some(api::CODE_OK));
    assert!(r.payload.is_empty());
    // Unknown services are refused.
    let id = rt.next_stream;
    rt.next_stream += 2;
    wire::send(
        &mut rt.stream,
        &Message {
            conn: PLUGIN_CONN,
            stream: id,
            kind: TYPE_REQUEST,
            flags: 0,
            payload: api::Request {
                service: "x.Y".into(),
                method: "Z".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        },
    )
    .unwrap();
    let m = rt.recv();
    let r = api::Response::decode(m.payload.as_slice()).unwrap();
    assert_eq!(r.status.map(|s| s.code), Some(api::CODE_UNIMPLEMENTED));

    let refused: Vec<(String, u32)> = plugin
        .events
        .lock()
        .iter()
        .filter_map(|e| match e {
            ContainerEvent::Refused { container, pid, .. } => Some((container.id.clone(), *pid)),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        vec![("c0".to_string(), me), ("c1".to_string(), me)]
    );

    // The runtime goes away: the plugin dials again.
    rt.stream.flush().unwrap();
    drop(rt);
    drop(plugin.accept());
    plugin.stop();
}

#[test]
fn a_refused_registration_ends_the_session_and_the_plugin_dials_again() {
    let Some(plugin) = Plugin::start(
        "a_refused_registration_ends_the_session_and_the_plugin_dials_again",
        "10",
        Duration::from_millis(20),
    ) else {
        return;
    };
    for attempt in 0..2 {
        let mut rt = plugin.accept();
        let m = rt.recv();
        assert_eq!(
            (m.conn, m.kind),
            (RUNTIME_CONN, TYPE_REQUEST),
            "attempt {attempt}"
        );
        rt.answer_registration(
            m.stream,
            api::Status {
                code: 6,
                message: "plugin \"10-portcullis\" already registered".into(),
            },
        );
        // The plugin hangs up: the next read sees the end of the stream.
        let mut demux = Demux::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match demux.fill(&mut rt.stream) {
                Err(WireError::Closed) => break,
                Ok(_) => assert!(
                    Instant::now() < deadline,
                    "the plugin kept the refused session"
                ),
                Err(e) => panic!("{e}"),
            }
        }
    }
    plugin.stop();
}
