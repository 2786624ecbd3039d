"""Widget groups of the home page: choosing the workspace and showing it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import core.data as data
import core.models as models
import core.viz as viz

from . import workspace as wsp

IMAGE_MODEL_CHOICES = ["Shipped model", "timm architecture", "Local checkpoint"]


def data_picker() -> dict | None:
    """Widgets that describe a data source; returns a data spec (None when an upload is missing)."""
    ws = wsp.get()
    source = st.radio("Data source", ["Built-in", "Upload"], horizontal=True, key="home_data_source")
    if source == "Built-in":
        names = data.available()
        current = ws["data"]["name"] if ws["data"]["kind"] == "builtin" else "shapes"
        name = st.selectbox("Dataset", names, index=names.index(current) if current in names else 0,
                            format_func=lambda n: f"{n}: {data.describe(n)}", key="home_data_name")
        kind = data.kind_of(name)
        c1, c2, c3 = st.columns(3)
        split = c1.selectbox("Split", ["test", "train"], key="home_data_split")
        seed = c3.number_input("Seed", 0, 10_000, 0, key="home_data_seed", help="Every random choice is seeded.")
        n = None
        if kind == "image" and name != "digits":
            n = int(c2.number_input("Images", 50, 5000, 500, step=50, key="home_data_n"))
        spec = {"kind": "builtin", "name": name, "split": split, "n": n, "seed": int(seed), "shift": None}
        if name == "shapes":
            presets = ["none"] + data.shift_presets()
            shift = st.selectbox("Shift preset", presets, key="home_data_shift",
                                 format_func=lambda s: "none (the training distribution)" if s == "none"
                                 else f"{s}: {data.describe_shift(s)}")
            spec["shift"] = None if shift == "none" else shift
        return spec
    up = st.file_uploader("Upload data", type=["zip", "csv", "parquet", "pq", "npz"], key="home_data_upload",
                          help="A .zip of an ImageFolder (one sub-folder per class), a CSV/Parquet table, or an .npz "
                               "with precomputed logits (and optionally features, labels, head_weight, head_bias).")
    if up is None:
        return None
    content = up.getvalue()
    spec = wsp.data_upload_spec(up.name, content)
    if wsp.is_table_file(up.name):
        from core.data.uploads import read_table_columns

        columns = None
        with wsp.guard("This table cannot be read"):
            columns, candidates = read_table_columns(content, up.name)
        if columns is None:
            return None
        default = candidates[0] if candidates else columns[-1]
        label = st.selectbox("Label column", columns, index=columns.index(default), key="home_data_label",
                             help="Columns with 2–50 distinct values are the likely labels.")
        spec["options"]["label"] = label
    return spec


def model_picker(data_kind: str) -> dict | None:
    """Widgets that describe a model for the given kind of data; returns a model spec."""
    if data_kind == "outputs":
        st.info("An .npz of precomputed outputs needs no model: analyses that need the model itself are disabled.")
        return {"kind": "none"}
    if data_kind == "table":
        from core.models.tabular import available_tabular

        name = st.selectbox("Tabular model (trained here on the training split)", available_tabular(), key="home_model_tab")
        seed = st.number_input("Training seed", 0, 10_000, 0, key="home_model_tab_seed")
        return {"kind": "tabular", "name": name, "seed": int(seed)}
    choice = st.radio("Model source", IMAGE_MODEL_CHOICES, horizontal=True, key="home_model_source")
    if choice == "Shipped model":
        zoo = models.available()
        name = st.selectbox("Model", zoo, key="home_model_zoo",
                            format_func=lambda n: f"{n}: {models.describe(n)}")
        return {"kind": "zoo", "name": name}
    name = st.text_input("timm architecture", "resnet18", key="home_model_timm",
                         help="Any name from timm.list_models(), e.g. resnet18, vit_small_patch16_224, deit_tiny_patch16_224.")
    c1, c2 = st.columns(2)
    num_classes = int(c1.number_input("Classes", 2, 1000, 6, key="home_model_classes"))
    input_size = int(c2.number_input("Input size (pixels)", 32, 384, 64, step=16, key="home_model_size"))
    if choice == "timm architecture":
        pretrained = st.checkbox("Pretrained hub weights (needs network)", False, key="home_model_pretrained")
        return {"kind": "timm", "name": name.strip(), "pretrained": pretrained, "num_classes": num_classes,
                "input_size": input_size}
    up = st.file_uploader("Checkpoint (.safetensors, or .pth/.pt loaded with weights_only=True)",
                          type=["safetensors", "pth", "pt", "bin"], key="home_model_ckpt")
    if up is None:
        return None
    digest = wsp.store_upload(up.name, up.getvalue())
    return {"kind": "checkpoint", "name": name.strip(), "filename": up.name, "digest": digest,
            "num_classes": num_classes, "input_size": input_size}


def preview_images(dataset: data.Dataset, outputs, n: int = 24) -> None:
    k = min(n, len(dataset))
    names = list(dataset.class_names)
    pred_names = outputs.class_names or names
    captions = []
    for i in range(k):
        y = int(dataset.labels[i])
        p = int(outputs.preds[i])
        true = names[y] if 0 <= y < len(names) else "OOD"
        pred = pred_names[p] if 0 <= p < len(pred_names) else str(p)
        mark = "✓" if true == pred else "✗"
        captions.append(f"{true} → {pred} {mark}")
    cols = st.columns(8)
    for i in range(k):
        with cols[i % 8]:
            st.image(dataset.images[i], caption=captions[i], width="stretch")


def show_workspace() -> None:
    """Everything about the current workspace: metrics, preview, balance, confusion matrix, card."""
    with wsp.guard("The workspace could not be loaded") as ok:
        _, model, dataset, outputs = wsp.current()
    if not ok[0]:
        if st.button("Reset to the default workspace"):
            wsp.set_workspace(dict(wsp.DEFAULT_WORKSPACE["model"]), dict(wsp.DEFAULT_WORKSPACE["data"]))
            st.rerun()
        return
    card = getattr(model, "card", {}) if model is not None else {}
    acc = outputs.accuracy()
    c = st.columns(4)
    c[0].metric("Samples", f"{len(dataset):,}")
    c[1].metric("Classes", len(dataset.class_names) or "none (OOD set)")
    c[2].metric("Accuracy on this data", "n/a" if acc is None else f"{acc:.1%}",
                help="Top-1 accuracy of the model on the samples shown here (samples without an in-distribution label are skipped).")
    reported = card.get("test_accuracy")
    c[3].metric("Reported test accuracy", "unknown" if reported is None else f"{reported:.1%}",
                help="From the model card: accuracy measured when the model was made.")
    tabs = st.tabs(["Preview", "Class balance", "Confusion matrix", "Model card", "Data details"])
    with tabs[0]:
        if dataset.images is not None:
            preview_images(dataset, outputs)
        elif dataset.frame is not None:
            st.dataframe(dataset.frame.head(50), width="stretch")
        else:
            st.write(f"{len(outputs)} precomputed outputs with {outputs.num_classes} classes"
                     + (f" and {outputs.features.shape[1]}-d features." if outputs.has_features else "."))
    class_names = dataset.class_names or outputs.class_names
    with tabs[1]:
        if class_names:
            preds = outputs.preds if len(outputs.class_names or class_names) == len(class_names) else None
            st.plotly_chart(viz.class_balance(dataset.labels, class_names, preds=preds), width="stretch")
        else:
            st.info("This dataset has no in-distribution labels (it is an out-of-distribution set).")
            pred_names = outputs.class_names or [str(i) for i in range(outputs.num_classes)]
            st.plotly_chart(viz.class_balance(outputs.preds, pred_names, title="Predicted classes"), width="stretch")
    with tabs[2]:
        pred_names = outputs.class_names or class_names
        if class_names and (dataset.labels >= 0).any():
            norm = st.toggle("Row-normalised", True, key="home_cm_norm")
            st.plotly_chart(viz.confusion_matrix(dataset.labels, outputs.preds, class_names, normalize=norm,
                                                 pred_names=pred_names), width="stretch")
        else:
            st.info("A confusion matrix needs in-distribution labels.")
    with tabs[3]:
        if card:
            st.json(card, expanded=1)
        else:
            st.info("Precomputed outputs carry no model card.")
    with tabs[4]:
        st.write(f"**{dataset.name}** · {dataset.kind} · {len(dataset)} samples")
        if dataset.changed_mechanisms:
            st.write("Changed mechanisms (ground truth for shift attribution): " + ", ".join(dataset.changed_mechanisms))
        if dataset.factors is not None:
            st.caption("Generative factors of each image (first 100 rows)")
            st.dataframe(dataset.factors.head(100), width="stretch")
        if dataset.params:
            st.caption("Parameters")
            st.json({k: v for k, v in dataset.params.items() if isinstance(v, (str, int, float, bool, list)) or v is None},
                    expanded=False)
        st.download_button("Download outputs (CSV: labels, predictions, logits)", lambda: outputs_csv(outputs),
                           file_name="outputs.csv", mime="text/csv", on_click="ignore")


def outputs_csv(outputs) -> bytes:
    names = outputs.class_names or [str(i) for i in range(outputs.num_classes)]
    df = pd.DataFrame(outputs.logits, columns=[f"logit[{c}]" for c in names])
    df.insert(0, "pred", outputs.preds)
    df.insert(0, "label", outputs.labels if outputs.labels is not None else np.full(len(outputs), -1))
    return df.to_csv(index=False).encode()


data_kind_of = wsp.data_kind_of
