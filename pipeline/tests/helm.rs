//! The Helm chart (`compose/helm/portcullis`): `helm lint --strict` and
//! `helm template` with the default values and `ci/full-values.yaml`, the
//! rendered objects validated against the OpenAPI schemas of Kubernetes
//! (offline, strictly: an unknown field fails), and what a node agent needs
//! asserted in the rendered DaemonSet. The agent's and the services'
//! configuration files, as rendered, load with portcullis's own parser.
//!
//! helm, k8s-validate and the schemas come from `scripts/helm setup`
//! (scripts/test runs it); without them the tests skip loudly, unless
//! PORTCULLIS_REQUIRE_HELM is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

struct Tools {
    helm: PathBuf,
    validate: PathBuf,
    swagger: PathBuf,
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compose/helm/portcullis")
}

fn tools(test: &str) -> Option<Tools> {
    let out = Command::new("timeout")
        .args(["1800", "bash"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/helm"))
        .arg("setup")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(PathBuf::from)
    };
    match (
        out.status.success(),
        get("PORTCULLIS_HELM"),
        get("PORTCULLIS_K8S_VALIDATE"),
        get("PORTCULLIS_K8S_SWAGGER"),
    ) {
        (true, Some(helm), Some(validate), Some(swagger)) => Some(Tools {
            helm,
            validate,
            swagger,
        }),
        _ => {
            let why = String::from_utf8_lossy(&out.stderr);
            assert!(
                std::env::var_os("PORTCULLIS_REQUIRE_HELM").is_none(),
                "{test}: scripts/helm setup failed: {why}"
            );
            eprintln!("!!!!!!!! SKIPPED {test}: scripts/helm setup failed (no Go module proxy?): {why} !!!!!!!!");
            None
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

impl Tools {
    fn helm(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("120")
            .arg(&self.helm)
            .args(args)
            .output()
            .unwrap()
    }

    /// `helm template` with `args`, validated; the objects, or the
    /// validator's complaints.
    fn render(&self, args: &[&str]) -> Result<Vec<Value>, String> {
        let chart = chart();
        let mut all = vec!["template", "portcullis", chart.to_str().unwrap()];
        all.extend_from_slice(args);
        let o = self.helm(&all);
        if !o.status.success() {
            return Err(format!("helm template: {}", text(&o)));
        }
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("objects.json");
        let mut child = Command::new(&self.validate)
            .arg("-swagger")
            .arg(&self.swagger)
            .arg("-json")
            .arg(&json)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(&o.stdout).unwrap();
        let v = child.wait_with_output().unwrap();
        if !v.status.success() {
            return Err(text(&v));
        }
        Ok(serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap())
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn has_kind(objects: &[Value], kind: &str) -> bool {
    objects.iter().any(|o| o["kind"] == kind)
}

/// The configuration file `key` of the chart's ConfigMap, loaded as
/// portcullis loads it.
fn load_config(
    objects: &[Value],
    key: &str,
) -> Result<portcullis_pipeline::config::Settings, String> {
    let cm = find(objects, "ConfigMap", "portcullis-config");
    let text = cm["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key}"));
    portcullis_pipeline::config::ConfigFile::parse(text)
        .map_err(|e| format!("{key}: {e}\n{text}"))?
        .build(key, portcullis_pipeline::config::Overrides::default())
        .map_err(|e| format!("{key}: {e}\n{text}"))
}

#[test]
fn the_chart_lints_renders_and_validates_with_default_and_full_values() {
    let Some(t) = tools("the_chart_lints_renders_and_validates_with_default_and_full_values")
    else {
        return;
    };
    let chart = chart();
    let full = chart.join("ci/full-values.yaml");
    for args in [vec![], vec!["-f", full.to_str().unwrap()]] {
        let mut all = vec!["lint", "--strict", chart.to_str().unwrap()];
        all.extend_from_slice(&args);
        let o = t.helm(&all);
        assert!(o.status.success(), "{}", text(&o));
        t.render(&args).unwrap();
    }
    // The validation has teeth: a misspelt field and a wrong type fail,
    // naming them.
    let err = t
        .render(&["--set", "agent.terminationGracePeriodSeconds=soon"])
        .unwrap_err();
    assert!(
        err.contains("terminationGracePeriodSeconds") && err.contains("integer"),
        "{err}"
    );
    let err = t
        .render(&[
            "--set",
            "agent.updateStrategy.rollingUpdate.maxUnavalable=1",
        ])
        .unwrap_err();
    assert!(
        err.contains("maxUnavalable") && err.contains("forbidden"),
        "{err}"
    );
    // The chart's NOTES say how to check it works.
    let o = t.helm(&[
        "install",
        "portcullis",
        chart.to_str().unwrap(),
        "--dry-run=client",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let notes = String::from_utf8_lossy(&o.stdout);
    for line in [
        "rollout status daemonset/portcullis-agent",
        "portcullis containers",
        "Operation not permitted",
    ] {
        assert!(notes.contains(line), "{line}: {notes}");
    }
}

#[test]
fn the_daemonset_gives_the_agent_what_it_needs() {
    let Some(t) = tools("the_daemonset_gives_the_agent_what_it_needs") else {
        return;
    };
    let objects = t.render(&[]).unwrap();
    // Embedded mode by default: the agent alone.
    assert!(!has_kind(&objects, "Deployment"));
    let ds = find(&objects, "DaemonSet", "portcullis-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    assert_eq!(pod["hostUsers"], true);
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    assert_eq!(pod["automountServiceAccountToken"], false);
    // Every taint tolerated: an operator Exists with no key.
    let tolerations = pod["tolerations"].as_array().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t["operator"] == "Exists" && t.get("key").is_none() && t.get("effect").is_none()));
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    assert_eq!(c["securityContext"]["runAsUser"], 0);
    assert_eq!(c["args"][2], "run");
    // Probes on the health endpoints of the metrics listener.
    assert_eq!(c["ports"][0]["containerPort"], 9771);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    // The node's name as the node id.
    assert_eq!(
        c["env"][0],
        serde_json::json!({"name": "PORTCULLIS_NODE_ID", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}})
    );
    // The runtimes' sockets and state, NRI, cgroups, the control socket
    // and the journal on the host.
    let host_paths: Vec<(&str, &str)> = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| Some((v["name"].as_str()?, v["hostPath"]["path"].as_str()?)))
        .collect();
    for want in [
        ("containerd", "/run/containerd"),
        ("crio", "/var/run/crio"),
        ("nri", "/var/run/nri"),
        ("cgroup", "/sys/fs/cgroup"),
        ("run", "/run/portcullis"),
        ("state", "/var/lib/portcullis"),
    ] {
        assert!(host_paths.contains(&want), "{want:?} not in {host_paths:?}");
    }
    // The rendered configuration loads, and the grace outlasts the
    // deadline: every pending decision is answered before SIGKILL.
    let s = load_config(&objects, "agent.toml").unwrap();
    assert!(s.containers.enabled);
    assert!(s.kafka.is_none());
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        std::time::Duration::from_secs(grace) > s.enforcer.deadline,
        "{grace}s vs {:?}",
        s.enforcer.deadline
    );
    assert_eq!(
        s.telemetry.metrics_listen.map(|a| a.port()),
        Some(9771),
        "the probes' port"
    );
}

#[test]
fn full_values_render_the_services_kafka_secrets_and_policies() {
    let Some(t) = tools("full_values_render_the_services_kafka_secrets_and_policies") else {
        return;
    };
    let full = chart().join("ci/full-values.yaml");
    let objects = t
        .render(&["-f", full.to_str().unwrap(), "--namespace", "security"])
        .unwrap();
    let scanner = find(&objects, "Deployment", "portcullis-scanner");
    let siem = find(&objects, "Deployment", "portcullis-siem-export");
    assert_eq!(scanner["spec"]["replicas"], 3);
    assert_eq!(siem["spec"]["replicas"], 2);
    for d in [scanner, siem] {
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert!(pod["affinity"]["podAntiAffinity"].is_object());
        // SASL credentials from the Secret, TLS files from the other.
        let env = c["env"].as_array().unwrap();
        assert!(env.iter().any(|e| e["name"] == "KAFKA_SASL_PASSWORD"
            && e["valueFrom"]["secretKeyRef"]["name"] == "kafka-credentials"
            && e["valueFrom"]["secretKeyRef"]["key"] == "pass"));
        assert!(pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "kafka-client-tls"));
    }
    let scanner_c = &scanner["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(scanner_c["args"][2], "scanner");
    assert!(scanner_c["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "$(POD_NAME)"));
    // No secret in any ConfigMap.
    let cm = find(&objects, "ConfigMap", "portcullis-config");
    let agent_toml = cm["data"]["agent.toml"].as_str().unwrap();
    assert!(agent_toml.contains("\"sasl.password\" = \"KAFKA_SASL_PASSWORD\""));
    assert!(agent_toml.contains("\"security.protocol\" = \"sasl_ssl\""));
    // The rules ConfigMap is mounted where the configuration looks.
    let rules = find(&objects, "ConfigMap", "portcullis-rules");
    assert!(rules["data"]["local.yar"]
        .as_str()
        .unwrap()
        .contains("rule local_marker"));
    // The files load with portcullis's parser up to the secret: the
    // variable is what the pod's env provides from the Secret.
    for key in ["agent.toml", "service.toml"] {
        let err = load_config(&objects, key).unwrap_err();
        assert!(
            err.contains("kafka.librdkafka_env.\"sasl.password\"")
                && err.contains("KAFKA_SASL_PASSWORD"),
            "{err}"
        );
        let text = cm["data"][key].as_str().unwrap();
        portcullis_pipeline::config::ConfigFile::parse(text).unwrap();
    }
    // Policies, with their pod-label selector, as the agent reads them.
    let file = portcullis_pipeline::config::ConfigFile::parse(agent_toml).unwrap();
    let policies: Vec<String> = file.policies.iter().map(|p| p.name.clone()).collect();
    assert_eq!(policies, ["workloads", "host-tools"]);
    // Skip rules: the release's own scanner services and siem-export, then
    // the values' rules, each field as written.
    /// name, image, namespace, labels.
    type Rule<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        Vec<(&'a str, &'a str)>,
    );
    let skip: Vec<Rule> = file
        .containers
        .skip
        .iter()
        .map(|r| {
            (
                r.name.as_deref(),
                r.image.as_deref(),
                r.namespace.as_deref(),
                r.labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        skip,
        vec![
            (Some("scanner"), None, Some("security"), vec![]),
            (Some("siem-export"), None, Some("security"), vec![]),
            (
                None,
                None,
                Some("kafka"),
                vec![("app.kubernetes.io/name", "kafka"), ("tier", "broker*")]
            ),
            (None, Some("registry.example.com/vetted/*"), None, vec![]),
        ]
    );
}
