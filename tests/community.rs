//! The community's data: NWB files as the WormID dandisets write them (made by the real
//! pynwb + ndx-multichannel-volume from the real worms in data/), the Leifer lab's NWB 2.1.0
//! files in data/scholz2018 (someone else's tooling), and the study's published Parquet pool
//! (written from the same worms in its layout). Each must give the same standard-format
//! values as the same worms through their native readers.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Workspace;
use wormflow_stages::table::{read_recordings, read_worm_infos, Worm};

use common::repo;

/// Run one of the tests' Python writers with the venv's Python (`make torch` installs
/// pynwb, ndx-multichannel-volume, h5py, pandas and pyarrow there).
fn write_with_python(script: &str, args: &[&str]) {
    let python = common::python().expect("the test venv's python (make torch)");
    let out = Command::new(python).arg(repo(script)).args(args).output().unwrap();
    assert!(out.status.success(), "{script} {args:?}: {}", common::text(&out.stderr));
}

fn download_and_standardize(files: &[&Path], params: &str) -> String {
    let list: Vec<String> =
        files.iter().map(|f| format!("{{ url = \"{}\" }}", f.display())).collect();
    format!(
        "[pipeline]\nname = \"c\"\n[stages.get]\nkind = \"download\"\nparams = {{ files = [{}] }}\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = {{ {params} }}\n",
        list.join(", ")
    )
}

fn standardize(files: &[&Path], params: &str) -> (Workspace, Vec<Worm>) {
    let ws = Workspace::new(&download_and_standardize(files, params));
    ws.run_events(&[]);
    let worms = read_recordings(&ws.file("results/std")).unwrap();
    (ws, worms)
}

/// Same neurons, same traces (f32 bytes), same time axis (within `dt_tol` seconds).
fn assert_same_worm(a: &Worm, b: &Worm, dt_tol: f64) {
    assert_eq!(a.worm, b.worm);
    assert_eq!(a.labelled(), b.labelled(), "{}", a.worm);
    assert_eq!(a.traces, b.traces, "{}: traces differ", a.worm);
    assert_eq!(a.t.len(), b.t.len(), "{}", a.worm);
    let worst = a.t.iter().zip(&b.t).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst <= dt_tol, "{}: time differs by up to {worst} s", a.worm);
}

#[test]
fn wormid_nwb_layouts_read_like_the_native_files() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = repo("data/dag2023/NeuroPAL_labels_dict.json");
    let nwb = |layout: &str, src: &str, name: &str| -> PathBuf {
        let out = tmp.path().join(layout).join(format!("{name}.nwb"));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let src = repo(src);
        write_with_python(
            "tests/nwb_write.py",
            &[
                layout,
                src.to_str().unwrap(),
                out.to_str().unwrap(),
                "--labels",
                labels.to_str().unwrap(),
            ],
        );
        out
    };
    // 000776 (timestamps, NeuronIDs/labels) from a Dag 2023 recording with irregular frames;
    // 000692 (NeuroPAL ID_labels through a permuted `rois` region, rate) from Kato worms.
    let dag = nwb("000776", "data/dag2023/2022-07-26-31-data.h5", "2022-07-26-31");
    let kato1 = nwb("000692", "data/kato2015/WT_NoStim_worm1.h5", "WT_NoStim_worm1");
    let kato2 = nwb("000692", "data/kato2015/WT_NoStim_worm2.h5", "WT_NoStim_worm2");
    let (_, native_dag) = standardize(
        &[&repo("data/dag2023/2022-07-26-31-data.h5"), &labels],
        r#"format = "flavell-h5", dataset = "D""#,
    );
    let (_, native_kato) = standardize(
        &[&repo("data/kato2015/WT_NoStim_worm1.h5"), &repo("data/kato2015/WT_NoStim_worm2.h5")],
        r#"format = "generic-h5", dataset = "D""#,
    );
    let (ws, from_nwb) = standardize(&[&dag, &kato1, &kato2], r#"format = "nwb", dataset = "D""#);
    assert_eq!(from_nwb.len(), 3);
    assert_same_worm(&from_nwb[0], &native_dag[0], 1e-9);
    // Kato's time is frame × (1080 s / frames); the NWB file stores it as a rate.
    assert_same_worm(&from_nwb[1], &native_kato[0], 1e-9);
    assert_same_worm(&from_nwb[2], &native_kato[1], 1e-9);
    let infos = read_worm_infos(&ws.file("results/std/worms.parquet")).unwrap();
    assert!(
        infos[0].2.signal.contains("processing/CalciumActivity/SignalCalciumImResponseSeries"),
        "{:?}",
        infos[0].2
    );
    assert!(infos[0].2.signal.contains("NeuronIDs/labels"));
    assert!(
        infos[1].2.signal.starts_with("ΔF/F: processing/CalciumActivity/SignalDFoF"),
        "{:?}",
        infos[1].2
    );
    assert!(infos[1].2.signal.contains("NeuroPAL/NeuroPALSegmentation/NeuroPALNeurons/ID_labels"));
    assert!(infos[1].2.time_note.contains("rate"));
    let log = ws.read("cache/logs/std.log");
    assert!(log.contains("WT_NoStim_worm1.nwb: worm WT_NoStim_worm1"), "{log}");

    // The other signal of the same file: raw fluorescence (the writer stored traces + 100).
    let (_, raw) = standardize(&[&kato1], r#"format = "nwb", dataset = "D", signal = "raw""#);
    let (slot, trace) =
        raw[0].traces.iter().enumerate().find_map(|(i, t)| Some((i, t.as_ref()?))).unwrap();
    let dff = native_kato[0].traces[slot].as_ref().unwrap();
    assert!(trace.iter().zip(dff).all(|(r, d)| (r - (d + 100.0)).abs() < 1e-3));
    let ws =
        Workspace::new(&download_and_standardize(&[&dag], r#"format = "nwb", signal = "dff""#));
    let err = ws.run_fails();
    assert!(
        err.contains("no ΔF/F series") && err.contains("SignalCalciumImResponseSeries (processed)"),
        "{err}"
    );
    assert!(!err.contains("cache/tmp"), "errors name the user's file: {err}");

    // 000541: neither rate nor timestamps → an error naming params.rate; with it, the values.
    let kato3 = nwb("000541", "data/kato2015/WT_NoStim_worm3.h5", "WT_NoStim_worm3");
    let ws = Workspace::new(&download_and_standardize(&[&kato3], r#"format = "nwb""#));
    let err = ws.run_fails();
    assert!(err.contains("params.rate") && err.contains("WT_NoStim_worm3.nwb"), "{err}");
    let (_, native3) =
        standardize(&[&repo("data/kato2015/WT_NoStim_worm3.h5")], r#"format = "generic-h5""#);
    let rate = (native3[0].t.len() - 1) as f64 / native3[0].t.last().unwrap();
    let (ws, with_rate) = standardize(&[&kato3], &format!(r#"format = "nwb", rate = {rate}"#));
    assert_same_worm(&with_rate[0], &native3[0], 1e-6);
    let infos = read_worm_infos(&ws.file("results/std/worms.parquet")).unwrap();
    assert!(infos[0].2.time_is_estimated && infos[0].2.time_note.contains("params.rate"));
}

#[test]
fn leifer_nwb_2_1_files_parse_and_are_dropped_for_having_no_identities() {
    let scholz = repo("data/scholz2018");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&scholz)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nwb"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    let tmp = tempfile::tempdir().unwrap();
    // One identified worm beside them, so the node succeeds and lists what it dropped.
    let kato = tmp.path().join("WT_NoStim_worm1.nwb");
    write_with_python(
        "tests/nwb_write.py",
        &[
            "000776",
            repo("data/kato2015/WT_NoStim_worm1.h5").to_str().unwrap(),
            kato.to_str().unwrap(),
        ],
    );
    let mut all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    all.push(&kato);
    let (ws, worms) = standardize(&all, r#"format = "nwb", dataset = "Scholz2018""#);
    assert_eq!(worms.len(), 1);
    let dropped: serde_json::Value =
        serde_json::from_str(&ws.read("results/std/dropped.json")).unwrap();
    let dropped = dropped.as_array().unwrap();
    assert_eq!(dropped.len(), 3, "{dropped:?}");
    for (d, n_neurons) in dropped.iter().zip([62, 59, 57]) {
        let reason = d["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("no identified neurons")
                && reason.contains(&format!("{n_neurons} trace columns")),
            "{reason}"
        );
    }
    assert!(ws.read("cache/logs/std.log").contains("dropped: no identified neurons"));
}

#[test]
fn an_nwb_file_without_traces_says_what_it_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("empty.nwb");
    // An NWB file whose only processing module holds behaviour, not calcium traces.
    let mut b = hdf5_pure::FileBuilder::new();
    b.set_attr("neurodata_type", hdf5_pure::AttrValue::VarLenString("NWBFile".into()));
    let mut processing = b.create_group("processing");
    let mut m = processing.create_group("Behavior");
    m.set_attr("neurodata_type", hdf5_pure::AttrValue::VarLenString("ProcessingModule".into()));
    m.create_dataset("velocity").with_f64_data(&[0.0, 1.0]);
    processing.add_group(m.finish());
    b.add_group(processing.finish());
    b.write(&path).unwrap();
    let ws = Workspace::new(&download_and_standardize(&[&path], r#"format = "nwb""#));
    let err = ws.run_fails();
    assert!(
        err.contains("no RoiResponseSeries") && err.contains("processing/Behavior: velocity"),
        "{err}"
    );
    assert!(err.contains("params.nwb_series"), "{err}");
}

#[test]
fn the_studys_parquet_pool_reads_like_the_native_files() {
    let tmp = tempfile::tempdir().unwrap();
    let pool = tmp.path().join("worm_data_short.parquet");
    let labels = repo("data/dag2023/NeuroPAL_labels_dict.json");
    let sources = [
        "data/kato2015/WT_NoStim_worm1.h5",
        "data/kato2015/WT_NoStim_worm2.h5",
        "data/dag2023/2022-07-26-31-data.h5",
    ];
    let mut args: Vec<String> =
        vec![pool.display().to_string(), "--labels".into(), labels.display().to_string()];
    args.extend(sources.iter().map(|s| repo(s).display().to_string()));
    write_with_python(
        "tests/worm_data_parquet_write.py",
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let (ws, worms) = standardize(&[&pool], r#"format = "worm-data-parquet""#);
    let ids: Vec<(String, String)> =
        worms.iter().map(|w| (w.dataset.clone(), w.worm.clone())).collect();
    let pair = |d: &str, w: &str| (d.to_string(), w.to_string());
    assert_eq!(
        ids,
        [pair("Kato2015", "worm0"), pair("Kato2015", "worm1"), pair("Dag2023", "worm0")]
    );
    let (_, kato) =
        standardize(&[&repo(sources[0]), &repo(sources[1])], r#"format = "generic-h5""#);
    let (_, dag) = standardize(&[&repo(sources[2]), &labels], r#"format = "flavell-h5""#);
    for (from_pool, native) in worms.iter().zip(kato.iter().chain(&dag)) {
        assert_eq!(from_pool.labelled(), native.labelled());
        assert_eq!(from_pool.traces, native.traces, "{}", native.worm);
        // The pool stores time as float32.
        let worst =
            from_pool.t.iter().zip(&native.t).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-3, "{worst}");
    }
    let infos = read_worm_infos(&ws.file("results/std/worms.parquet")).unwrap();
    assert!(
        infos[0].2.source.contains("WT_NoStim_worm1.h5")
            && infos[0].2.source.contains("unlabelled rows skipped"),
        "{:?}",
        infos[0].2
    );

    let (ws, processed) =
        standardize(&[&pool], r#"format = "worm-data-parquet", signal = "processed""#);
    assert_eq!(processed.len(), 3);
    assert!((processed[0].median_dt() - 0.333).abs() < 1e-3, "{}", processed[0].median_dt());
    let infos = read_worm_infos(&ws.file("results/std/worms.parquet")).unwrap();
    assert!(infos[0].2.signal.contains("normalisation standard"), "{:?}", infos[0].2);

    // Two recordings under one (source_dataset, worm) inside one file: refused, naming
    // both raw files, never merged into one worm.
    let clash = tmp.path().join("clash.parquet");
    let python = common::python().unwrap();
    let rename = "import pandas as pd, sys\ndf = pd.read_parquet(sys.argv[1])\ndf.loc[(df.source_dataset == 'Kato2015') & (df.worm == 'worm1'), 'worm'] = 'worm0'\ndf.to_parquet(sys.argv[2])";
    let out = Command::new(python)
        .args(["-c", rename, pool.to_str().unwrap(), clash.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let ws =
        Workspace::new(&download_and_standardize(&[&clash], r#"format = "worm-data-parquet""#));
    let err = ws.run_fails();
    assert!(
        err.contains("worm0 of Kato2015 comes from two raw files")
            && err.contains("WT_NoStim_worm1.h5")
            && err.contains("WT_NoStim_worm2.h5"),
        "{err}"
    );
    assert!(!ws.file("results/std").exists());
}

/// An NWB file cut short (an interrupted download) says so wherever it was cut; one whose
/// labelled traces are all NaN says that, not that it has no identified neurons.
#[test]
fn truncated_and_all_nan_nwb_files_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole.nwb");
    let kato = repo("data/kato2015/WT_NoStim_worm1.h5");
    write_with_python(
        "tests/nwb_write.py",
        &["000776", kato.to_str().unwrap(), whole.to_str().unwrap()],
    );
    let bytes = std::fs::read(&whole).unwrap();
    for percent in [10, 50, 99] {
        let cut = tmp.path().join(format!("cut{percent}.nwb"));
        std::fs::write(&cut, &bytes[..bytes.len() * percent / 100]).unwrap();
        let ws = Workspace::new(&download_and_standardize(&[&cut], r#"format = "nwb""#));
        let err = ws.run_fails();
        assert!(
            err.contains("truncated") && err.contains(&format!("cut{percent}.nwb")),
            "{percent}%: {err}"
        );
        assert!(!err.contains("no RoiResponseSeries"), "{percent}%: {err}");
    }
    let nan = tmp.path().join("nan.nwb");
    write_with_python(
        "tests/nwb_write.py",
        &["000776", kato.to_str().unwrap(), nan.to_str().unwrap(), "--all-nan"],
    );
    let ws = Workspace::new(&download_and_standardize(&[&nan], r#"format = "nwb""#));
    let err = ws.run_fails();
    assert!(err.contains("every labelled trace is NaN"), "{err}");
    assert!(!err.contains("no identified neurons among its labels"), "{err}");
}

/// A new user's folder: four generic-h5 worms made with h5py (from real Kato 2015 worms, at
/// 0.5 s per frame) taken to a report by pipelines/byo.toml, as the README's worked example.
#[test]
fn your_own_folder_to_a_report() {
    let ws = Workspace::new(&std::fs::read_to_string(repo("pipelines/byo.toml")).unwrap());
    std::fs::create_dir_all(ws.file("mydata")).unwrap();
    let make = |name: &str, source: usize, transposed: bool| {
        let script = format!(
            r#"
import h5py, numpy as np
src = h5py.File("{src}", "r")
traces = src["traces"][:600]
names = src["neuron_names"][:]
with h5py.File("{out}", "w") as f:
    f["traces"] = traces.T if {transposed} else traces
    f["time"] = np.arange(600) * 0.5
    f["neuron_names"] = names
    f.attrs["signal"] = "dF/F0"
    f.attrs["source"] = "our rig, session 3"
    f.attrs["time_note"] = "2 Hz camera"
"#,
            src = repo(&format!("data/kato2015/WT_NoStim_worm{source}.h5")).display(),
            out = ws.file(&format!("mydata/{name}")).display(),
            transposed = if transposed { "True" } else { "False" },
        );
        let out = Command::new(common::python().unwrap()).args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", common::text(&out.stderr));
    };
    for i in 1..=4 {
        make(&format!("worm{i}.h5"), i, false);
    }
    ws.run_events(&[]);
    assert!(ws.file("results/report/report.html").exists());
    let infos = read_worm_infos(&ws.file("results/std/worms.parquet")).unwrap();
    assert_eq!(infos.len(), 4);
    let info = &infos[0].2;
    assert_eq!(
        (info.signal.as_str(), info.source.as_str(), info.time_note.as_str()),
        ("dF/F0", "our rig, session 3", "2 Hz camera")
    );
    // Resampling 0.5 s data to 0.667 s: from → to, per worm, in the table and the log.
    let pre = read_worm_infos(&ws.file("results/pre/worms.parquet")).unwrap();
    assert!(pre[0].2.resampling.starts_with("600 steps → 449 steps"), "{}", pre[0].2.resampling);
    assert!(ws.read("cache/logs/pre.log").contains("600 steps → 449 steps"));

    // A fifth worm: the folder's key changes by that file; removing it changes it back.
    make("worm5.h5", 5, false);
    let status = common::text(&ws.cmd(&["status", "-v"]).output().unwrap().stdout);
    assert!(status.contains("file mydata/worm5.h5 added"), "{status}");
    std::fs::remove_file(ws.file("mydata/worm5.h5")).unwrap();
    assert!(ws.run_events(&[]).ran().is_empty(), "back to the stored results");

    // A transposed file is named as the user's file, and called transposed.
    make("bad.h5", 1, true);
    let err = ws.run_fails();
    assert!(err.contains("mydata/bad.h5") && err.contains("looks transposed"), "{err}");
    assert!(!err.contains("cache/tmp"), "{err}");
}
