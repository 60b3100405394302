"""Write a real recording shipped in data/ as an NWB file, in one of the layouts the WormID
dandisets use (focolab/NWBelegans conventions), with the real pynwb and ndx-multichannel-volume.

    python nwb_write.py LAYOUT SOURCE OUT.nwb [--labels NeuroPAL_labels_dict.json] [--all-nan]

SOURCE is a generic-h5 worm (/traces, /time, /neuron_names: data/kato2015, data/flavell2023)
or a Flavell-lab recording (gcamp/traces_array_F_F20 + timing/timestamp_confocal, labels from
--labels: data/dag2023). LAYOUT:

  000776   Atanas/Flavell: processing/CalciumActivity/SignalCalciumImResponseSeries directly in
           the module, with timestamps; labels in processing/CalciumActivity/NeuronIDs/labels
           (SegmentationLabels), one per ROI of CalciumSeriesSegmentation/Seg_tpoint_0.
  000692   NeuroPAL: labels in processing/NeuroPAL/NeuroPALSegmentation/NeuroPALNeurons/ID_labels,
           a ragged column (ID_labels + ID_labels_index, one character per element, as
           NWBelegans writes it); the ROIs of that table are stored in reverse order and the
           series' `rois` region maps each trace column to its row. SignalDFoF (DfOverF) holds
           the ΔF/F traces, with starting_time + rate; SignalRawFluor (Fluorescence) holds a
           second signal (the traces + 100, standing in for raw fluorescence).
  000541   Nejatbakhsh/Yemini: SignalRawFluor/SignalCalciumImResponseSeries with neither rate
           nor timestamps (starting_time is removed after writing, as those files have it),
           labels in NeuronIDs/labels.

ROI voxel masks are one voxel per ROI at (column, 0, 0): the recordings here carry no
positions, and readers of traces never look at them.
"""

import argparse
import json
import os
import warnings
from datetime import datetime, timezone

import h5py
import numpy as np
from hdmf.backends.hdf5.h5_utils import H5DataIO
from pynwb import NWBHDF5IO, NWBFile
from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, RoiResponseSeries

from ndx_multichannel_volume import (
    CElegansSubject,
    ImagingVolume,
    OpticalChannelPlus,
    OpticalChannelReferences,
    PlaneExtension,
    SegmentationLabels,
)


def read_source(path, labels_json):
    with h5py.File(path, "r") as f:
        if "traces" in f:
            traces = f["traces"][:]
            time = f["time"][:]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["neuron_names"][:]]
            return traces, time, names
        traces = f["gcamp/traces_array_F_F20"][:]
        time = f["timing/timestamp_confocal"][:]
    uid = os.path.basename(path).removesuffix("-data.h5").removesuffix(".h5")
    by_column = json.load(open(labels_json))[uid]
    names = [""] * traces.shape[1]
    for col, entry in by_column.items():
        names[int(col) - 1] = entry["label"]
    return traces, time, names


def volume(nwb, name):
    device = nwb.devices.get("Spinning disk") or nwb.create_device(name="Spinning disk")
    channel = OpticalChannelPlus(
        name="GCaMP", description="GCaMP", excitation_lambda=488.0, excitation_range=[480.0, 496.0],
        emission_lambda=525.0, emission_range=[510.0, 540.0],
    )
    vol = ImagingVolume(
        name=name, optical_channel_plus=[channel],
        order_optical_channels=OpticalChannelReferences(name="order_optical_channels", channels=["GCaMP"]),
        description="imaging volume", device=device, location="head",
        grid_spacing=[0.3, 0.3, 1.5], grid_spacing_unit="um",
        origin_coords=[0.0, 0.0, 0.0], origin_coords_unit="um", reference_frame="worm head",
    )
    nwb.add_imaging_plane(vol)
    return vol


def segmentation(name, vol, n_rois, labels=None):
    seg = PlaneExtension(name=name, description="neuron centres", imaging_plane=vol)
    for i in range(n_rois):
        seg.add_roi(voxel_mask=[[np.uint(i), np.uint(0), np.uint(0), 1.0]])
    if labels is not None:
        # NWBelegans: add_column(..., data=labels, index=True) -- a ragged column whose
        # elements are the characters of each label.
        seg.add_column(name="ID_labels", description="ROI ID labels", data=labels, index=True)
    return seg


def write(layout, traces, time, names, out):
    nwb = NWBFile(
        session_description="test recording written from a real worm shipped in data/",
        identifier=os.path.basename(out).removesuffix(".nwb"),
        session_start_time=datetime(2023, 1, 9, tzinfo=timezone.utc),
        related_publications="wormflow tests",
    )
    nwb.subject = CElegansSubject(
        subject_id=os.path.basename(out).removesuffix(".nwb"), species="http://purl.obolibrary.org/obo/NCBITaxon_6239",
        growth_stage="YA", cultivation_temp=20.0, description="", sex="O",
    )
    n_steps, n_rois = traces.shape
    calcium = nwb.create_processing_module(name="CalciumActivity", description="calcium activity")
    vol = volume(nwb, "CalciumImVol")
    rate = float((n_steps - 1) / (time[-1] - time[0]))
    if layout == "000692":
        neuropal = nwb.create_processing_module(name="NeuroPAL", description="NeuroPAL")
        np_vol = volume(nwb, "NeuroPALImVol")
        order = list(range(n_rois))[::-1]  # table row r holds trace column order[r]
        table = segmentation("NeuroPALNeurons", np_vol, n_rois, [names[c] for c in order])
        neuropal.add(ImageSegmentation(name="NeuroPALSegmentation", plane_segmentations=[table]))
        for container, data in ((DfOverF, traces), (Fluorescence, traces + 100.0)):
            name = "SignalDFoF" if container is DfOverF else "SignalRawFluor"
            # Trace column c is table row order.index(c). One region per series, as
            # NWBelegans makes them (a shared one would be written as a soft link).
            region = table.create_roi_table_region(
                description="trace column → NeuroPAL ROI", region=[order.index(c) for c in range(n_rois)]
            )
            series = RoiResponseSeries(
                name="SignalCalciumImResponseSeries", description=name, data=H5DataIO(data, compression="gzip"),
                rois=region, unit="a.u.", starting_time=0.0, rate=rate,
            )
            calcium.add(container(name=name, roi_response_series=series))
        calcium.add(ImageSegmentation(name="CalciumSeriesSegmentation",
                                      plane_segmentations=[segmentation("Seg_tpoint_0", vol, n_rois)]))
    else:
        seg = segmentation("Seg_tpoint_0", vol, n_rois)
        image_seg = ImageSegmentation(name="CalciumSeriesSegmentation", plane_segmentations=[seg])
        calcium.add(image_seg)
        calcium.add(SegmentationLabels(name="NeuronIDs", labels=names, description="calcium ROI labels",
                                       ImageSegmentation=image_seg))
        region = seg.create_roi_table_region(description="all ROIs", region=list(range(n_rois)))
        if layout == "000776":
            series = RoiResponseSeries(name="SignalCalciumImResponseSeries", description="processed traces",
                                       data=traces, rois=region, unit="a.u.", timestamps=time)
            calcium.add(series)
        else:
            series = RoiResponseSeries(name="SignalCalciumImResponseSeries", description="raw fluorescence",
                                       data=traces, rois=region, unit="a.u.", starting_time=0.0, rate=rate)
            calcium.add(Fluorescence(name="SignalRawFluor", roi_response_series=series))
    with NWBHDF5IO(out, "w") as io:
        io.write(nwb)
    if layout == "000541":
        with h5py.File(out, "a") as f:
            del f["processing/CalciumActivity/SignalRawFluor/SignalCalciumImResponseSeries/starting_time"]


def main():
    # ImagingVolume's optional optical_channel link and similar: not what a trace reader reads.
    warnings.simplefilter("ignore")
    ap = argparse.ArgumentParser()
    ap.add_argument("layout", choices=["000776", "000692", "000541"])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--labels")
    ap.add_argument("--all-nan", action="store_true", help="every trace value NaN (a broken export)")
    a = ap.parse_args()
    traces, time, names = read_source(a.source, a.labels)
    if a.all_nan:
        traces = np.full(np.shape(traces), np.nan)
    write(a.layout, np.asarray(traces, dtype=np.float64), np.asarray(time, dtype=np.float64), names, a.out)
    if a.layout == "000541":
        return  # pynwb itself refuses such a series ("either 'timestamps' or 'rate' must be specified")
    # Read it back with pynwb, as a user would, to be sure the file is valid NWB.
    with NWBHDF5IO(a.out, "r") as io:
        nwb = io.read()
        assert nwb.processing["CalciumActivity"] is not None


if __name__ == "__main__":
    main()
