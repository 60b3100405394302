//! Raw formats without a real file here are tested on fixtures written with the exact layout
//! the study's readers expect (qsimeon/worm-graph, worm-data-preprocess).

mod common;

use common::Workspace;
use hdf5_pure::{AttrValue, FileBuilder};
use wormflow_stages::neurons::index_of;
use wormflow_stages::table::read_recordings;

fn standardize(ws: &Workspace, files: &[&str], params: &str) -> Vec<wormflow_stages::table::Worm> {
    let list: Vec<String> = files.iter().map(|f| format!("{{ url = \"{f}\" }}")).collect();
    ws.write(
        "pipeline.toml",
        &format!("[pipeline]\nname = \"f\"\n[stages.get]\nkind = \"download\"\nparams = {{ files = [{}] }}\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = {{ {params} }}\n", list.join(", ")),
    );
    ws.run_events(&[]);
    read_recordings(&ws.file("results/std")).unwrap()
}

fn class(name: &str) -> AttrValue {
    AttrValue::AsciiString(name.into())
}

fn utf16(s: &str) -> Vec<u16> {
    s.encode_utf16().collect()
}

/// A MATLAB v7.3 file like Kato 2015's WT_NoStim.mat: struct WT_NoStim with cell fields
/// IDs / traces / timeVectorSeconds, two worms.
fn write_zimmer(path: &std::path::Path) {
    let mut b = FileBuilder::new();
    b.with_userblock(512);
    let mut refs = b.create_group("#refs#");
    // Worm 1: 5 steps × 3 traces (MATLAB T × N, stored N × T).
    let w1: Vec<f64> = (0..3).flat_map(|c| (0..5).map(move |r| (c * 10 + r) as f64)).collect();
    refs.create_dataset("t1")
        .with_f64_data(&w1)
        .with_shape(&[3, 5])
        .set_attr("MATLAB_class", class("double"));
    refs.create_dataset("v1")
        .with_f64_data(&[0.0, 0.3, 0.6, 0.9, 1.2])
        .with_shape(&[1, 5])
        .set_attr("MATLAB_class", class("double"));
    refs.create_dataset("n_aval")
        .with_u16_data(&utf16("AVAL"))
        .with_shape(&[4, 1])
        .set_attr("MATLAB_class", class("char"));
    refs.create_dataset("n_empty")
        .with_u64_data(&[0, 0])
        .set_attr("MATLAB_class", class("double"))
        .set_attr("MATLAB_empty", AttrValue::U8(1));
    refs.create_dataset("n_riml")
        .with_u16_data(&utf16("RIML"))
        .with_shape(&[4, 1])
        .set_attr("MATLAB_class", class("char"));
    refs.create_dataset("n_cands")
        .with_path_references(&["#refs#/n_empty", "#refs#/n_riml"])
        .set_attr("MATLAB_class", class("cell"));
    refs.create_dataset("ids1")
        .with_path_references(&["#refs#/n_aval", "#refs#/n_empty", "#refs#/n_cands"])
        .set_attr("MATLAB_class", class("cell"));
    // Worm 2: 4 steps × 1 trace.
    refs.create_dataset("t2")
        .with_f64_data(&[5.0, 6.0, 7.0, 8.0])
        .with_shape(&[1, 4])
        .set_attr("MATLAB_class", class("double"));
    refs.create_dataset("v2")
        .with_f64_data(&[0.0, 0.5, 1.0, 1.5])
        .with_shape(&[1, 4])
        .set_attr("MATLAB_class", class("double"));
    refs.create_dataset("n_ava")
        .with_u16_data(&utf16("AVAR"))
        .with_shape(&[4, 1])
        .set_attr("MATLAB_class", class("char"));
    refs.create_dataset("ids2")
        .with_path_references(&["#refs#/n_ava"])
        .set_attr("MATLAB_class", class("cell"));
    b.add_group(refs.finish());
    let mut s = b.create_group("WT_NoStim");
    s.create_dataset("IDs")
        .with_path_references(&["#refs#/ids1", "#refs#/ids2"])
        .with_shape(&[2, 1])
        .set_attr("MATLAB_class", class("cell"));
    s.create_dataset("traces")
        .with_path_references(&["#refs#/t1", "#refs#/t2"])
        .with_shape(&[2, 1])
        .set_attr("MATLAB_class", class("cell"));
    s.create_dataset("timeVectorSeconds")
        .with_path_references(&["#refs#/v1", "#refs#/v2"])
        .with_shape(&[2, 1])
        .set_attr("MATLAB_class", class("cell"));
    b.add_group(s.finish());
    b.write(path).unwrap();
}

#[test]
fn zimmer_mat_cells_of_names_traces_and_times() {
    let ws = Workspace::new("");
    write_zimmer(&ws.file("WT_NoStim.mat"));
    let worms =
        standardize(&ws, &["WT_NoStim.mat"], "format = \"zimmer-mat\", dataset = \"Kato2015\"");
    assert_eq!(worms.len(), 2);
    let w = &worms[0];
    assert_eq!(w.worm, "WT_NoStim_worm1");
    assert_eq!(
        w.labelled(),
        ["AVAL", "RIML"],
        "empty entry skipped; first non-empty candidate taken"
    );
    // Column 0 (AVAL) over time is 0..5; column 2 (RIML) is 20..25 — transposed from N × T.
    assert_eq!(
        w.traces[index_of("AVAL").unwrap()].as_deref(),
        Some(&[0.0f32, 1.0, 2.0, 3.0, 4.0][..])
    );
    assert_eq!(
        w.traces[index_of("RIML").unwrap()].as_deref(),
        Some(&[20.0f32, 21.0, 22.0, 23.0, 24.0][..])
    );
    assert_eq!(w.t, [0.0, 0.3, 0.6, 0.9, 1.2]);
    assert_eq!(worms[1].labelled(), ["AVAR"]);
    assert_eq!(worms[1].dataset, "Kato2015");
}

#[test]
fn zimmer_mat_without_the_struct_fields_is_refused() {
    let ws = Workspace::new("");
    let mut b = FileBuilder::new();
    let mut g = b.create_group("WT_Stim");
    g.create_dataset("other").with_f64_data(&[1.0]);
    b.add_group(g.finish());
    b.write(ws.file("WT_Stim.mat")).unwrap();
    ws.write("pipeline.toml", "[pipeline]\nname = \"f\"\n[stages.get]\nkind = \"download\"\nparams = { files = [{ url = \"WT_Stim.mat\" }] }\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = { format = \"zimmer-mat\" }\n");
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        common::text(&out.stdout)
            .contains("none of the fields [\\\"IDs\\\", \\\"NeuronNames\\\", \\\"neuron_ID\\\"]"),
        "{}",
        common::text(&out.stdout)
    );
}

#[test]
fn leifer_text_files() {
    let ws = Workspace::new("");
    ws.write("0_gcamp.txt", "1.0 nan 3.0\n2.0 nan 4.0\n3.0 nan 5.5\n");
    ws.write("0_labels.txt", "AVA\n\nRIML\nEXTRA\n");
    ws.write("0_t.txt", "0.0e+00\n6.0e-01\n1.2e+00\n");
    let worms = standardize(
        &ws,
        &["0_gcamp.txt", "0_labels.txt", "0_t.txt"],
        "format = \"leifer\", dataset = \"Leifer2023\"",
    );
    let w = &worms[0];
    assert_eq!(w.worm, "worm0");
    assert_eq!(w.labelled(), ["AVAL", "RIML"], "AVA without a side resolves to the free side");
    assert_eq!(w.info.ambiguous_resolved, 1);
    assert_eq!(w.traces[index_of("RIML").unwrap()].as_deref(), Some(&[3.0f32, 4.0, 5.5][..]));
    assert_eq!(w.t, [0.0, 0.6, 1.2]);
}

#[test]
fn flavell_json_wormwideweb() {
    let ws = Workspace::new("");
    ws.write(
        "2023-01-01-01.json",
        r#"{"uid": "2023-01-01-01", "trace_array": [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
            "timestamp_confocal": [100.0, 100.6, 101.2],
            "labeled": {"1": {"label": "SAAD?"}, "3": {"label": "VB02"}}}"#,
    );
    let worms = standardize(
        &ws,
        &["2023-01-01-01.json"],
        "format = \"flavell-json\", dataset = \"Flavell2023\"",
    );
    let w = &worms[0];
    assert_eq!(w.worm, "2023-01-01-01");
    assert_eq!(w.labelled(), ["SAADL", "VB2"]);
    assert_eq!(w.traces[index_of("VB2").unwrap()].as_deref(), Some(&[7.0f32, 8.0, 9.0][..]));
    assert!((w.t[2] - 1.2).abs() < 1e-9 && w.t[0] == 0.0);
}

/// The study's HDF5 copy of an Atanas 2023 recording: root trace_array_F20 (time × neuron),
/// neuropal_label ("missing" = unidentified; variable-length strings as Julia writes them,
/// or fixed-length NUL-padded ones as h5py writes a numpy `S` array), timestamp_confocal.
fn write_flavell_2023_h5(
    path: &std::path::Path,
    labels: &[&str],
    times: &[f64],
    fixed_length: bool,
) {
    let traces: Vec<f64> = (0..times.len())
        .flat_map(|r| (0..labels.len()).map(move |c| (c * 10 + r) as f64))
        .collect();
    let mut b = FileBuilder::new();
    b.create_dataset("trace_array_F20")
        .with_f64_data(&traces)
        .with_shape(&[times.len() as u64, labels.len() as u64]);
    let names = b.create_dataset("neuropal_label");
    if fixed_length {
        names.with_ascii_strings_sized(labels, 8).unwrap();
    } else {
        names.with_vlen_strings(labels);
    }
    b.create_dataset("timestamp_confocal").with_f64_data(times);
    b.write(path).unwrap();
}

#[test]
fn flavell_2023_reads_the_archives_json_and_h5_copies() {
    let ws = Workspace::new("");
    write_flavell_2023_h5(
        &ws.file("2022-06-14-01.h5"),
        &["AVAL", "missing", "SAAD?", "SAAD?"],
        &[50.0, 50.6, 51.2],
        false,
    );
    write_flavell_2023_h5(&ws.file("2022-06-14-02.h5"), &["missing", "RIMR"], &[0.0, 0.6], true);
    ws.write(
        "2023-01-01-01.json",
        r#"{"uid": "2023-01-01-01", "trace_array": [[1, 2], [3, 4]], "timestamp_confocal": [0.0, 0.6], "labeled": {"2": {"label": "RIML"}}}"#,
    );
    ws.write("README.txt", "not a recording");
    let worms = standardize(
        &ws,
        &["2022-06-14-01.h5", "2022-06-14-02.h5", "2023-01-01-01.json", "README.txt"],
        "format = \"flavell-2023\", dataset = \"Flavell2023\"",
    );
    assert_eq!(worms.len(), 3, "README.txt is outside the default *.{{json,h5}}");
    let h5 = &worms[0];
    assert_eq!(h5.worm, "2022-06-14-01");
    assert_eq!(
        h5.labelled(),
        ["AVAL", "SAADL", "SAADR"],
        "\"missing\" is unidentified; the two SAAD? take both sides"
    );
    // Column 0 (AVAL) over time is 0, 1, 2; column 3 (second SAAD?) is 30, 31, 32.
    assert_eq!(h5.traces[index_of("AVAL").unwrap()].as_deref(), Some(&[0.0f32, 1.0, 2.0][..]));
    assert_eq!(h5.traces[index_of("SAADR").unwrap()].as_deref(), Some(&[30.0f32, 31.0, 32.0][..]));
    assert!((h5.t[2] - 1.2).abs() < 1e-9 && h5.t[0] == 0.0);
    assert_eq!(worms[1].labelled(), ["RIMR"], "fixed-length, NUL-padded labels");
    assert_eq!(worms[2].labelled(), ["RIML"]);
}

#[test]
fn flavell_2023_h5_written_neuron_by_time_is_refused() {
    let ws = Workspace::new("");
    // 3 labels and 4 times, but the matrix is 3 × 4 (neuron × time).
    let mut b = FileBuilder::new();
    b.create_dataset("trace_array_F20").with_f64_data(&[0.0; 12]).with_shape(&[3, 4]);
    b.create_dataset("neuropal_label").with_vlen_strings(&["AVAL", "AVAR", "RIML"]);
    b.create_dataset("timestamp_confocal").with_f64_data(&[0.0, 0.6, 1.2, 1.8]);
    b.write(ws.file("w.h5")).unwrap();
    ws.write("pipeline.toml", "[pipeline]\nname = \"f\"\n[stages.get]\nkind = \"download\"\nparams = { files = [{ url = \"w.h5\" }] }\n[stages.std]\nkind = \"standardize\"\nneeds = [\"get\"]\nparams = { format = \"flavell-2023\" }\n");
    let out = ws.wf(&["run", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = common::text(&out.stdout);
    assert!(
        stdout.contains("w.h5: trace_array_F20 is 3 × 4 (time × neuron) but there are 3 labels"),
        "{stdout}"
    );
    assert!(!ws.file("results/std").exists());
}

/// A minimal MATLAB v5 writer for fixtures (the layout scipy.io.savemat produces).
mod mat5 {
    use std::io::Write;

    fn el(ty: u32, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&ty.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        while v.len() % 8 != 0 {
            v.push(0);
        }
        v
    }

    fn matrix(name: &str, class: u8, dims: &[i32], body: &[u8]) -> Vec<u8> {
        let mut inner = el(6, &[class, 0, 0, 0, 0, 0, 0, 0]);
        inner.extend(el(5, &dims.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>()));
        inner.extend(el(1, name.as_bytes()));
        inner.extend_from_slice(body);
        el(14, &inner)
    }

    pub fn double(name: &str, data: &[f64]) -> Vec<u8> {
        matrix(
            name,
            6,
            &[1, data.len() as i32],
            &el(9, &data.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>()),
        )
    }

    pub fn chars(name: &str, s: &str) -> Vec<u8> {
        let units: Vec<u8> = s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        matrix(name, 4, &[1, s.len() as i32], &el(4, &units))
    }

    pub fn cell(name: &str, items: &[Vec<u8>]) -> Vec<u8> {
        matrix(name, 1, &[1, items.len() as i32], &items.concat())
    }

    pub fn compressed(var: Vec<u8>) -> Vec<u8> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&var).unwrap();
        let data = z.finish().unwrap();
        let mut v = 15u32.to_le_bytes().to_vec();
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend(data);
        v
    }

    pub fn file(vars: &[Vec<u8>]) -> Vec<u8> {
        let mut header =
            format!("{:<116}", "MATLAB 5.0 MAT-file, written by wormflow tests").into_bytes();
        header.extend_from_slice(&[0; 8]);
        header.extend_from_slice(&0x0100u16.to_le_bytes());
        header.extend_from_slice(b"IM");
        header.extend(vars.concat());
        header
    }
}

#[test]
fn yemini_mat_v5_bilateral_and_unpaired_neurons() {
    let ws = Workspace::new("");
    let trace = |base: f64| -> Vec<u8> {
        let mut t = vec![0.0; 4];
        t.extend((0..6).map(|k| base + k as f64));
        mat5::double("", &t)
    };
    let nan = f64::NAN;
    let bytes = mat5::file(&[
        mat5::double("fps", &[2.0]),
        mat5::cell("files", &[mat5::chars("", "worm_a"), mat5::chars("", "worm_b")]),
        mat5::cell(
            "neurons",
            &[mat5::chars("", "AVA"), mat5::chars("", "RIS"), mat5::chars("", "SMDD")],
        ),
        mat5::compressed(mat5::cell(
            "is_L",
            &[
                mat5::double("", &[1.0, 1.0, 0.0, 0.0]),
                mat5::double("", &[nan, nan]),
                mat5::double("", &[1.0, 0.0]),
            ],
        )),
        mat5::cell(
            "norm_traces",
            &[
                mat5::cell("", &[trace(100.0), trace(200.0), trace(110.0), trace(210.0)]),
                mat5::cell("", &[trace(300.0), mat5::double("", &[])]),
                mat5::cell("", &[trace(400.0), trace(500.0)]),
            ],
        ),
    ]);
    std::fs::write(ws.file("Head_Activity_OH15500.mat"), bytes).unwrap();
    let worms = standardize(
        &ws,
        &["Head_Activity_OH15500.mat"],
        "format = \"yemini-mat\", dataset = \"Yemini2021\"",
    );
    assert_eq!(worms.len(), 2);
    let (a, b) = (&worms[0], &worms[1]);
    assert_eq!(a.worm, "worm_a");
    assert_eq!(a.labelled(), ["AVAL", "AVAR", "RIS", "SMDDL"]);
    assert_eq!(
        b.labelled(),
        ["AVAL", "AVAR", "SMDDR"],
        "RIS has no trace in worm b; SMDD is_L = 0 → right"
    );
    assert_eq!(
        a.traces[index_of("AVAR").unwrap()].as_deref(),
        Some(&[110.0f32, 111.0, 112.0, 113.0, 114.0, 115.0][..])
    );
    assert_eq!(
        a.t,
        [0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
        "leading zeros dropped, time = index / fps from 0"
    );
}
