//! The data stages on real recordings (shipped in data/) and on synthetic worms, through
//! the real binary.

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{Events, Workspace};
use serde_json::Value;
use wormflow_stages::neurons;
use wormflow_stages::table::{read_recordings, read_worm_infos, Worm};
use wormflow_stages::windows::{read_split, read_windows};

fn repo(rel: &str) -> String {
    common::repo(rel).display().to_string()
}

const DAG_UIDS: [&str; 7] = [
    "2022-07-26-31",
    "2022-07-26-38",
    "2022-07-27-31",
    "2022-07-27-38",
    "2022-07-27-45",
    "2022-08-02-31",
    "2022-08-02-38",
];

fn dag_pipeline() -> String {
    let mut files: Vec<String> = DAG_UIDS
        .iter()
        .map(|u| format!("{{ url = \"{}\" }}", repo(&format!("data/dag2023/{u}-data.h5"))))
        .collect();
    for f in ["2022-01-16-01-data.h5", "2022-05-02-01-data.h5"] {
        files.push(format!(
            "{{ url = \"{}\" }}",
            repo(&format!("tests/fixtures/dag2023_no_id/{f}"))
        ));
    }
    files.push(format!("{{ url = \"{}\" }}", repo("data/dag2023/NeuroPAL_labels_dict.json")));
    format!(
        "[pipeline]\nname = \"dag\"\n[stages.get]\nkind = \"download\"\nparams = {{ files = [{}] }}\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = {{ format = \"flavell-h5\", dataset = \"Dag2023\", missing_labels = \"drop\" }}\n",
        files.join(", ")
    )
}

/// Labelled neurons per uid, derived here from the labels JSON with the documented rule:
/// exact canonical labels used once count; then each `?` label takes the first matching
/// canonical name not yet used in the worm.
fn expected_labelled(labels: &Value, uid: &str) -> usize {
    let entries = labels[uid].as_object().unwrap();
    let mut cols: Vec<(usize, String)> = entries
        .iter()
        .map(|(k, v)| (k.parse().unwrap(), neurons::normalise(v["label"].as_str().unwrap())))
        .collect();
    cols.sort();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for (_, l) in &cols {
        if !l.contains('?') && neurons::index_of(l).is_some() {
            *count.entry(l.clone()).or_default() += 1;
        }
    }
    let mut used: HashSet<String> = count.keys().cloned().collect();
    let mut n = count.values().filter(|c| **c == 1).count();
    for (_, l) in cols.iter().filter(|(_, l)| l.contains('?')) {
        let hit = neurons::names().iter().find(|name| {
            name.len() == l.len()
                && !used.contains(*name)
                && l.chars().zip(name.chars()).all(|(a, b)| a == '?' || a == b)
        });
        if let Some(h) = hit {
            used.insert(h.clone());
            n += 1;
        }
    }
    n
}

#[test]
fn dag2023_nine_files_give_seven_labelled_worms() {
    let ws = Workspace::new(&dag_pipeline());
    ws.run_events(&[]);
    let worms = read_recordings(&ws.file("results/std")).unwrap();
    assert_eq!(worms.iter().map(|w| w.worm.as_str()).collect::<Vec<_>>(), DAG_UIDS);
    let dropped: Value = serde_json::from_str(&ws.read("results/std/dropped.json")).unwrap();
    assert_eq!(
        dropped.as_array().unwrap().len(),
        2,
        "the two recordings without identities are dropped: {dropped}"
    );
    let labels: Value = serde_json::from_slice(
        &std::fs::read(repo("data/dag2023/NeuroPAL_labels_dict.json")).unwrap(),
    )
    .unwrap();
    for w in &worms {
        assert_eq!(w.labelled().len(), expected_labelled(&labels, &w.worm), "worm {}", w.worm);
        assert_eq!(w.t[0], 0.0);
        let dt = w.median_dt();
        assert!((dt - 0.600).abs() < 0.006, "median dt {dt}");
        assert_eq!(w.dataset, "Dag2023");
        // Values equal the HDF5 columns.
        let f = hdf5_pure::File::open(repo(&format!("data/dag2023/{}-data.h5", w.worm))).unwrap();
        let ds = f.dataset("gcamp/traces_array_F_F20").unwrap();
        let (shape, raw) = (ds.shape().unwrap(), ds.read_f64().unwrap());
        let n_cols = shape[1] as usize;
        for (col, entry) in labels[&w.worm].as_object().unwrap() {
            let label = entry["label"].as_str().unwrap();
            let Some(slot) = neurons::index_of(label) else { continue };
            let Some(trace) = &w.traces[slot] else { continue };
            let c: usize = col.parse::<usize>().unwrap() - 1;
            for (r, v) in trace.iter().enumerate() {
                assert_eq!(*v, raw[r * n_cols + c] as f32, "{} {label} frame {r}", w.worm);
            }
        }
    }
}

fn generic_pipeline(files: &[String]) -> String {
    let list: Vec<String> = files.iter().map(|f| format!("{{ url = \"{f}\" }}")).collect();
    format!(
        "[pipeline]\nname = \"g\"\n[stages.get]\nkind = \"download\"\nparams = {{ files = [{}] }}\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = {{ format = \"generic-h5\" }}\n",
        list.join(", ")
    )
}

#[test]
fn kato2015_and_flavell2023_generic_h5() {
    let kato: Vec<String> =
        (1..=5).map(|i| repo(&format!("data/kato2015/WT_NoStim_worm{i}.h5"))).collect();
    let ws = Workspace::new(&generic_pipeline(&kato));
    ws.run_events(&[]);
    let worms = read_recordings(&ws.file("results/std")).unwrap();
    assert_eq!(worms.iter().map(|w| w.labelled().len()).collect::<Vec<_>>(), [38, 44, 32, 47, 31]);
    assert!(worms
        .iter()
        .all(|w| w.info.time_is_estimated && w.dataset == "Kato2015" && w.t[0] == 0.0));
    assert!(worms[0].info.citation.contains("Kato"));

    let ws = Workspace::new(&generic_pipeline(&[repo("data/flavell2023/2022-08-02-01.h5")]));
    ws.run_events(&[]);
    let worms = read_recordings(&ws.file("results/std")).unwrap();
    assert_eq!(worms.len(), 1);
    assert_eq!(worms[0].labelled().len(), 98);
    assert!(worms[0].labelled().contains(&"VB2"), "VB02 is mapped to VB2");
    assert!(!worms[0].info.time_is_estimated);
    let infos = read_worm_infos(&ws.file("results/std/worms.parquet")).unwrap();
    assert_eq!(infos[0].0, "Flavell2023");
}

/// The default-like pool: 13 real worms from 3 sources, preprocessed and split.
fn pool_pipeline(extra: &str) -> String {
    let mut dag: Vec<String> = DAG_UIDS
        .iter()
        .map(|u| format!("{{ url = \"{}\" }}", repo(&format!("data/dag2023/{u}-data.h5"))))
        .collect();
    dag.push(format!("{{ url = \"{}\" }}", repo("data/dag2023/NeuroPAL_labels_dict.json")));
    let kato: Vec<String> = (1..=5)
        .map(|i| {
            format!("{{ url = \"{}\" }}", repo(&format!("data/kato2015/WT_NoStim_worm{i}.h5")))
        })
        .collect();
    format!(
        r#"[pipeline]
name = "pool"
[stages.get_dag]
kind = "download"
params = {{ files = [{}] }}
[stages.get_generic]
kind = "download"
params = {{ files = [{}, {{ url = "{}" }}] }}
[stages.std_dag]
kind = "standardize"
needs = ["get_dag"]
params = {{ format = "flavell-h5", dataset = "Dag2023" }}
[stages.std_generic]
kind = "standardize"
needs = ["get_generic"]
params = {{ format = "generic-h5" }}
[stages.preprocess]
kind = "preprocess"
needs = ["std_dag", "std_generic"]
[stages.split]
kind = "split"
needs = ["preprocess"]
{extra}"#,
        dag.join(", "),
        kato.join(", "),
        repo("data/flavell2023/2022-08-02-01.h5")
    )
}

#[test]
fn mixed_datasets_follow_source_proportions_over_many_seeds() {
    let seeds: Vec<String> = (0..150).map(|s| s.to_string()).collect();
    let ws = Workspace::new(&pool_pipeline(&format!(
        "[stages.sample]\nkind = \"sample\"\nneeds = [\"split\"]\nmatrix = {{ s = [{}] }}\nparams = {{ n_worms = 3, seed = \"${{matrix.s}}\", n_windows = 4 }}\n",
        seeds.join(", ")
    )));
    ws.run_events(&["-j", "2"]);
    let split = read_split(&ws.file("results/split/split.parquet")).unwrap();
    assert_eq!(split.len(), 13);
    let mut per_source: BTreeMap<String, f64> = BTreeMap::new();
    for s in &seeds {
        let summary: wormflow_stages::summaries::SampleSummary = wormflow_stages::summaries::read(
            &ws.file(&format!("results/sample/s={s}/sample.parquet")),
        )
        .unwrap();
        assert_eq!(summary.n_worms, 3);
        // Windows are inside their worm's half.
        let windows =
            read_windows(&ws.file(&format!("results/sample/s={s}/windows.parquet"))).unwrap();
        let trained: std::collections::BTreeSet<(&str, &str)> = windows
            .iter()
            .filter(|w| w.set == "train")
            .map(|w| (w.dataset.as_str(), w.worm.as_str()))
            .collect();
        assert_eq!(trained.len(), 3);
        for (d, _) in trained {
            *per_source.entry(d.to_string()).or_default() += 1.0;
        }
        for w in &windows {
            let row = split.iter().find(|r| r.worm == w.worm && r.dataset == w.dataset).unwrap();
            let part = wormflow_stages::windows::Part::parse(&w.set).unwrap();
            let ranges = row.ranges_of(part);
            assert!(
                ranges.iter().any(|&(a, b)| w.start >= a && w.start + w.length <= b),
                "{w:?} outside {ranges:?}"
            );
        }
        assert_eq!(
            windows.iter().filter(|w| w.set == "val").count(),
            13 * 4,
            "validation is every worm"
        );
    }
    for (source, size) in [("Dag2023", 7.0), ("Kato2015", 5.0), ("Flavell2023", 1.0)] {
        let mean = per_source.get(source).copied().unwrap_or(0.0) / seeds.len() as f64;
        let expected = 3.0 * size / 13.0;
        assert!(
            (mean - expected).abs() < 0.2,
            "{source}: {mean:.3} worms per draw, expected {expected:.3}"
        );
    }
}

fn stats(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[test]
fn preprocess_properties_on_real_worms() {
    // z-score only: mean 0, std 1 per neuron.
    let ws = Workspace::new(&pool_pipeline(""));
    ws.run_events(&[
        "--results",
        "--set",
        "stages.preprocess.params.smooth_alpha=1.0",
        "--set",
        "stages.preprocess.params.resample_dt=0",
    ]);
    let raw = [
        read_recordings(&ws.file("results/std_dag")).unwrap(),
        read_recordings(&ws.file("results/std_generic")).unwrap(),
    ]
    .concat();
    let z = read_recordings(&ws.file("results/preprocess")).unwrap();
    assert_eq!(z.len(), 13);
    for w in &z {
        for trace in w.traces.iter().flatten() {
            let (m, s) = stats(trace);
            assert!(m.abs() < 1e-4 && (s - 1.0).abs() < 1e-4, "{}: mean {m} std {s}", w.worm);
        }
    }
    // Smoothing equals the formula on the z-scored values.
    ws.run_events(&["--results", "--set", "stages.preprocess.params.resample_dt=0"]);
    let smooth = read_recordings(&ws.file("results/preprocess")).unwrap();
    for (zw, sw) in z.iter().zip(&smooth) {
        for (zt, st) in zw.traces.iter().zip(&sw.traces) {
            let (Some(zt), Some(st)) = (zt, st) else { continue };
            let mut s = zt[0] as f64;
            for (k, &x) in zt.iter().enumerate() {
                if k > 0 {
                    s = 0.5 * x as f64 + 0.5 * s;
                }
                assert!((st[k] as f64 - s).abs() < 1e-4);
            }
        }
    }
    // Full defaults: resampled to 0.667 s, no NaN, bytes identical across runs.
    ws.run_events(&[]);
    let full: Vec<Worm> = read_recordings(&ws.file("results/preprocess")).unwrap();
    for (w, r) in full.iter().zip(&raw) {
        assert!((w.median_dt() - 0.667).abs() < 1e-9);
        assert!(*w.t.last().unwrap() < *r.t.last().unwrap());
        assert!(w.traces.iter().flatten().all(|t| t.iter().all(|v| v.is_finite())));
    }
    // The study's resampling rule, as an independent numpy implementation computes it.
    let python = std::env::var_os("VIRTUAL_ENV")
        .map(|v| std::path::PathBuf::from(v).join("bin/python"))
        .unwrap_or_else(|| "python3".into());
    let check = std::process::Command::new(python)
        .arg(repo("tests/resample_numpy.py"))
        .args(
            [
                "results/preprocess/recordings.parquet",
                "results/std_dag/recordings.parquet",
                "results/std_generic/recordings.parquet",
            ]
            .map(|f| ws.file(f)),
        )
        .output()
        .expect("run tests/resample_numpy.py");
    let report = common::text(&check.stdout);
    println!("{report}");
    assert!(
        check.status.success(),
        "wormflow's resampling differs from numpy's:\n{report}{}",
        common::text(&check.stderr)
    );
    assert_eq!(
        report.matches("block mean of 6").count(),
        13,
        "Dag 2023 (1.67 Hz), Kato 2015 (≈2.9 Hz) and Flavell 2023 all downsample: {report}"
    );
    let first = std::fs::read(ws.file("results/preprocess/recordings.parquet")).unwrap();
    let again = Workspace::new(&pool_pipeline(""));
    again.run_events(&["-j", "1"]);
    assert_eq!(
        first,
        std::fs::read(again.file("results/preprocess/recordings.parquet")).unwrap(),
        "same input ⇒ same bytes"
    );
}

#[test]
fn synthetic_sets_are_reproducible_by_seed() {
    let p = |seed: u64| {
        format!("[pipeline]\nname = \"s\"\nseed = {seed}\n[stages.sines]\nkind = \"synthesize\"\nparams = {{ model = \"sines\", n_worms = 5, n_steps = 300 }}\n[stages.walk]\nkind = \"synthesize\"\nparams = {{ model = \"random_walk\", n_worms = 5, n_steps = 300 }}\n[stages.wired]\nkind = \"synthesize\"\nparams = {{ model = \"connectome\", n_worms = 2, n_steps = 200, noise = 0.1, connectome = \"{}\" }}\n", repo("data/connectome/white_1986_whole.json"))
    };
    let (a, b, c) = (Workspace::new(&p(1)), Workspace::new(&p(1)), Workspace::new(&p(2)));
    for ws in [&a, &b, &c] {
        ws.run_events(&[]);
    }
    for stage in ["sines", "walk", "wired"] {
        let file = format!("results/{stage}/recordings.parquet");
        let bytes = std::fs::read(a.file(&file)).unwrap();
        assert_eq!(bytes, std::fs::read(b.file(&file)).unwrap(), "{stage}: same seed, same bytes");
        assert_ne!(
            bytes,
            std::fs::read(c.file(&file)).unwrap(),
            "{stage}: another seed, other data"
        );
    }
    let sines = read_recordings(&a.file("results/sines")).unwrap();
    assert_eq!(sines.len(), 5);
    assert!(sines.iter().all(|w| w.labelled().len() == 50 && w.n_steps() == 300));
    // A neuron observed in two worms has the same frequency but its own phase.
    let shared =
        (0..302).find(|&i| sines[0].traces[i].is_some() && sines[1].traces[i].is_some()).unwrap();
    assert_ne!(sines[0].traces[shared], sines[1].traces[shared]);
    let wired = read_recordings(&a.file("results/wired")).unwrap();
    let trace = wired[0].traces.iter().flatten().next().unwrap();
    let (_, s) = stats(trace);
    assert!(
        s > 0.01 && trace.iter().all(|v| v.is_finite()),
        "the connectome network moves: std {s}"
    );
}

/// Write a generic-h5 worm: traces (T × N), time, names.
fn write_generic(path: &std::path::Path, traces: &[f64], t: &[f64], names: &[&str]) {
    let mut b = hdf5_pure::FileBuilder::new();
    b.create_dataset("traces")
        .with_f64_data(traces)
        .with_shape(&[t.len() as u64, names.len() as u64]);
    b.create_dataset("time").with_f64_data(t);
    b.create_dataset("neuron_names").with_vlen_strings(names);
    b.set_attr("dataset", hdf5_pure::AttrValue::VarLenString("Fixture".into()));
    b.write(path).unwrap();
}

/// A standardize that must fail with a message containing `expect`, storing nothing.
fn standardize_fails(setup: impl Fn(&Workspace) -> String, params: &str, expect: &[&str]) {
    let ws = Workspace::new("");
    let url = setup(&ws);
    ws.write(
        "pipeline.toml",
        &format!("[pipeline]\nname = \"b\"\n[stages.get]\nkind = \"download\"\nparams = {{ files = [{{ url = \"{url}\" }}] }}\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = {{ {params} }}\n"),
    );
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out.stderr));
    let ev = Events::parse(&common::text(&out.stdout));
    let failed =
        ev.0.iter()
            .find(|e| e["event"] == "failed")
            .unwrap_or_else(|| panic!("no failure: {:?}", ev.0));
    let msg = failed["error"].as_str().unwrap();
    for e in expect {
        assert!(msg.contains(e), "expected {e:?} in {msg}");
    }
    assert!(ev.nodes("done").iter().all(|n| n != "std"));
    assert!(!ws.file("results/std").exists(), "nothing stored for the failed node");
}

#[test]
fn bad_recordings_are_refused_with_clear_errors() {
    let ok_t = [0.0, 0.5, 1.0, 1.5];
    // Missing file.
    standardize_fails(
        |_| "no/such/file.h5".into(),
        "format = \"generic-h5\"",
        &["get: depends on the file \"no/such/file.h5\"", "cannot be read"],
    );
    // Wrong format: a Flavell file read as generic-h5.
    standardize_fails(
        |_| repo("data/dag2023/2022-07-26-31-data.h5"),
        "format = \"generic-h5\"",
        &["no readable dataset \"traces\"", "check `format`"],
    );
    // Not HDF5 at all.
    standardize_fails(
        |ws| {
            ws.write("x.h5", "not hdf5");
            "x.h5".into()
        },
        "format = \"generic-h5\"",
        &["x.h5", "cannot read as HDF5"],
    );
    // HDF5 without the expected dataset.
    standardize_fails(
        |ws| {
            let mut b = hdf5_pure::FileBuilder::new();
            b.create_dataset("traces").with_f64_data(&[1.0, 2.0]).with_shape(&[2, 1]);
            b.write(ws.file("w.h5")).unwrap();
            "w.h5".into()
        },
        "format = \"generic-h5\"",
        &["no readable dataset \"time\""],
    );
    // NaN and Inf inside a labelled trace.
    standardize_fails(
        |ws| {
            write_generic(
                &ws.file("n.h5"),
                &[1.0, 2.0, f64::NAN, 3.0, 0.0, 1.0, 4.0, 2.0],
                &ok_t,
                &["AVAL", "AVAR"],
            );
            "n.h5".into()
        },
        "format = \"generic-h5\"",
        &["neuron AVAL", "NaN at frame 1", "nan = \"interpolate\""],
    );
    standardize_fails(
        |ws| {
            write_generic(
                &ws.file("i.h5"),
                &[1.0, 2.0, 3.0, f64::INFINITY, 0.0, 1.0, 4.0, 2.0],
                &ok_t,
                &["AVAL", "AVAR"],
            );
            "i.h5".into()
        },
        "format = \"generic-h5\"",
        &["neuron AVAR", "infinite at frame 1"],
    );
    // Zero-length recording.
    standardize_fails(
        |ws| {
            write_generic(&ws.file("z.h5"), &[], &[], &["AVAL"]);
            "z.h5".into()
        },
        "format = \"generic-h5\"",
        &["recording is empty"],
    );
    // Non-monotonic time stamps.
    standardize_fails(
        |ws| {
            write_generic(
                &ws.file("t.h5"),
                &[1.0, 2.0, 3.0, 4.0],
                &[0.0, 0.5, 0.4, 1.0],
                &["AVAL"],
            );
            "t.h5".into()
        },
        "format = \"generic-h5\"",
        &["not increasing at frame 2"],
    );
    // Labels JSON missing a uid.
    standardize_fails(
        |ws| {
            ws.write("labels.json", "{\"2022-07-26-38\": {}}");
            std::fs::copy(
                repo("data/dag2023/2022-07-26-31-data.h5"),
                ws.file("2022-07-26-31-data.h5"),
            )
            .unwrap();
            "2022-07-26-31-data.h5\" }, { url = \"labels.json".into()
        },
        "format = \"flavell-h5\", labels = \"labels.json\"",
        &["no labels for recording \"2022-07-26-31\"", "missing_labels = \"drop\""],
    );
}

#[test]
fn nan_gaps_can_be_interpolated_on_request() {
    let ws = Workspace::new("");
    write_generic(
        &ws.file("n.h5"),
        &[1.0, 2.0, f64::NAN, 3.0, 5.0, 1.0, 7.0, 2.0],
        &[0.0, 0.5, 1.0, 1.5],
        &["AVAL", "AVAR"],
    );
    ws.write("pipeline.toml", "[pipeline]\nname = \"n\"\n[stages.get]\nkind = \"download\"\nparams = { files = [{ url = \"n.h5\" }] }\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = { format = \"generic-h5\", nan = \"interpolate\" }\n");
    ws.run_events(&[]);
    let w = &read_recordings(&ws.file("results/std")).unwrap()[0];
    assert_eq!(
        w.traces[neurons::index_of("AVAL").unwrap()].as_deref(),
        Some(&[1.0f32, 3.0, 5.0, 7.0][..])
    );
}

#[test]
fn two_recordings_with_one_worm_id_are_refused() {
    let ws = Workspace::new(&generic_pipeline(&["a/x.h5".into(), "b/y.h5".into()]));
    for f in ["a/x.h5", "b/y.h5"] {
        std::fs::create_dir_all(ws.file(f).parent().unwrap()).unwrap();
        let mut b = hdf5_pure::FileBuilder::new();
        b.create_dataset("traces").with_f64_data(&[1.0, 2.0, 3.0, 4.0]).with_shape(&[4, 1]);
        b.create_dataset("time").with_f64_data(&[0.0, 0.5, 1.0, 1.5]);
        b.create_dataset("neuron_names").with_vlen_strings(&["AVAL"]);
        b.set_attr("worm", hdf5_pure::AttrValue::VarLenString("worm1".into()));
        b.write(ws.file(f)).unwrap();
    }
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let ev = Events::parse(&common::text(&out.stdout));
    let failed = ev.0.iter().find(|e| e["event"] == "failed").expect("std fails");
    let msg = failed["error"].as_str().unwrap();
    assert!(msg.contains("worm id \"worm1\" appears twice: in x.h5 and in y.h5"), "{msg}");
    assert!(!ws.file("results/std").exists());
}
