"""Fixtures: a small synthetic NSL-KDD-shaped data set (no real data needed) and a bundle
trained on it once per test session."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FIELDS = """duration protocol_type service flag src_bytes dst_bytes land wrong_fragment urgent hot
num_failed_logins logged_in num_compromised root_shell su_attempted num_root num_file_creations
num_shells num_access_files num_outbound_cmds is_host_login is_guest_login count srv_count
serror_rate srv_serror_rate rerror_rate srv_rerror_rate same_srv_rate diff_srv_rate
srv_diff_host_rate dst_host_count dst_host_srv_count dst_host_same_srv_rate
dst_host_diff_srv_rate dst_host_same_src_port_rate dst_host_srv_diff_host_rate
dst_host_serror_rate dst_host_srv_serror_rate dst_host_rerror_rate dst_host_srv_rerror_rate""".split()
assert len(FIELDS) == 41

#: Smaller forests than the real ones, to keep the suite fast.
SMALL = {
    "iforest_params": {"n_estimators": 20, "max_samples": 128, "max_features": 1.0, "bootstrap": False},
    "rf_params": {"n_estimators": 10, "max_depth": 8, "min_samples_leaf": 1, "max_features": "sqrt", "class_weight": None},
}

CATEGORIES = "label,category\nnormal,normal\nneptune,dos\nsmurf,dos\nsatan,probe\nguess_passwd,r2l\n"


def synth_rows(n: int, seed: int, attack_share: float = 0.4, services=("http", "smtp", "domain_u", "ftp_data")):
    """KDD-shaped rows: 41 features + label. Attacks look like neptune (S0 floods), smurf
    (icmp echo floods) or satan (probing); normal rows are varied tcp/udp sessions."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        f = dict.fromkeys(FIELDS, 0)
        r = rng.random()
        if r >= attack_share:
            label = "normal"
            proto = rng.choice(["tcp", "tcp", "udp"])
            f.update(protocol_type=proto, service=rng.choice(services) if proto == "tcp" else "domain_u",
                     flag="SF", src_bytes=int(rng.lognormal(5, 1)), dst_bytes=int(rng.lognormal(7, 1.5)),
                     logged_in=int(proto == "tcp"), count=int(rng.integers(1, 20)), srv_count=int(rng.integers(1, 20)),
                     same_srv_rate=1.0, dst_host_count=int(rng.integers(1, 255)),
                     dst_host_srv_count=int(rng.integers(1, 255)), dst_host_same_srv_rate=round(rng.random(), 2),
                     duration=int(rng.integers(0, 5)))
        else:
            kind = rng.choice(["neptune", "smurf", "satan"])
            label = str(kind)
            if kind == "neptune":
                f.update(protocol_type="tcp", service="private", flag="S0", count=int(rng.integers(100, 300)),
                         srv_count=int(rng.integers(1, 30)), serror_rate=1.0, srv_serror_rate=1.0,
                         same_srv_rate=0.05, diff_srv_rate=0.07, dst_host_count=255,
                         dst_host_srv_count=int(rng.integers(1, 30)), dst_host_serror_rate=1.0,
                         dst_host_srv_serror_rate=1.0)
            elif kind == "smurf":
                f.update(protocol_type="icmp", service="ecr_i", flag="SF", src_bytes=1032,
                         count=511, srv_count=511, same_srv_rate=1.0, dst_host_count=255,
                         dst_host_srv_count=255, dst_host_same_srv_rate=1.0, dst_host_same_src_port_rate=1.0)
            else:
                f.update(protocol_type="tcp", service=rng.choice(["other", "private", "http"]), flag="REJ",
                         rerror_rate=1.0, srv_rerror_rate=1.0, count=int(rng.integers(1, 10)),
                         diff_srv_rate=1.0, dst_host_rerror_rate=round(rng.random(), 2))
        rows.append([f[c] for c in FIELDS] + [label])
    return rows


def write_csv_gz(path: Path, rows, extra=("21",)) -> None:
    lines = [",".join([str(v) for v in r] + list(extra)) for r in rows]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0))


def make_nsl(root: Path, n_train: int = 900, seed: int = 1) -> Path:
    d = root / "datasets" / "nsl-kdd"
    d.mkdir(parents=True, exist_ok=True)
    (d / "field_names.csv").write_text("".join(f"{c},{'symbolic' if c in ('protocol_type', 'service', 'flag') else 'continuous'}\n" for c in FIELDS))
    (d / "attack_categories.csv").write_text(CATEGORIES)
    write_csv_gz(d / "KDDTrain+.txt.gz", synth_rows(n_train, seed))
    # the test set has a service never seen in training ("telnet") and a novel attack label
    test = synth_rows(300, seed + 1, services=("http", "smtp", "telnet"))
    test += [r[:-1] + ["guess_passwd"] for r in synth_rows(20, seed + 2, attack_share=0.0)]
    write_csv_gz(d / "KDDTest+.txt.gz", test)
    write_csv_gz(d / "KDDTest-21.txt.gz", test[::2])
    return root


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    return make_cic(make_nsl(tmp_path_factory.mktemp("shared")))


@pytest.fixture(autouse=True)
def _shared_env(shared, monkeypatch):
    monkeypatch.setenv("NETANOM_SHARED", str(shared))


def train_small(shared: Path, out: Path, dataset: str = "nsl-kdd"):
    import os

    from netanom_models.train import TrainConfig, train

    old = os.environ.get("NETANOM_SHARED")
    os.environ["NETANOM_SHARED"] = str(shared)
    try:
        return train(TrainConfig(dataset=dataset, out_dir=out, max_epochs=4, quiet=True, **SMALL))
    finally:
        if old is None:
            os.environ.pop("NETANOM_SHARED", None)
        else:
            os.environ["NETANOM_SHARED"] = old


@pytest.fixture(scope="session")
def trained(shared, tmp_path_factory):
    return train_small(shared, tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="session")
def trained_cic(shared, tmp_path_factory):
    return train_small(shared, tmp_path_factory.mktemp("cic_bundle"), "cic-ids2017")


# ---- a synthetic CIC-IDS2017-shaped sample (header of the improved CSVs, 91 columns) --------
CIC_HEADER = (
    "id,Flow ID,Src IP,Src Port,Dst IP,Dst Port,Protocol,Timestamp,Flow Duration,Total Fwd Packet,"
    "Total Bwd packets,Total Length of Fwd Packet,Total Length of Bwd Packet,Fwd Packet Length Max,"
    "Fwd Packet Length Min,Fwd Packet Length Mean,Fwd Packet Length Std,Bwd Packet Length Max,"
    "Bwd Packet Length Min,Bwd Packet Length Mean,Bwd Packet Length Std,Flow Bytes/s,Flow Packets/s,"
    "Flow IAT Mean,Flow IAT Std,Flow IAT Max,Flow IAT Min,Fwd IAT Total,Fwd IAT Mean,Fwd IAT Std,Fwd IAT Max,"
    "Fwd IAT Min,Bwd IAT Total,Bwd IAT Mean,Bwd IAT Std,Bwd IAT Max,Bwd IAT Min,Fwd PSH Flags,Bwd PSH Flags,"
    "Fwd URG Flags,Bwd URG Flags,Fwd RST Flags,Bwd RST Flags,Fwd Header Length,Bwd Header Length,"
    "Fwd Packets/s,Bwd Packets/s,Packet Length Min,Packet Length Max,Packet Length Mean,Packet Length Std,"
    "Packet Length Variance,FIN Flag Count,SYN Flag Count,RST Flag Count,PSH Flag Count,ACK Flag Count,"
    "URG Flag Count,CWR Flag Count,ECE Flag Count,Down/Up Ratio,Average Packet Size,Fwd Segment Size Avg,"
    "Bwd Segment Size Avg,Fwd Bytes/Bulk Avg,Fwd Packet/Bulk Avg,Fwd Bulk Rate Avg,Bwd Bytes/Bulk Avg,"
    "Bwd Packet/Bulk Avg,Bwd Bulk Rate Avg,Subflow Fwd Packets,Subflow Fwd Bytes,Subflow Bwd Packets,"
    "Subflow Bwd Bytes,FWD Init Win Bytes,Bwd Init Win Bytes,Fwd Act Data Pkts,Fwd Seg Size Min,Active Mean,"
    "Active Std,Active Max,Active Min,Idle Mean,Idle Std,Idle Max,Idle Min,ICMP Code,ICMP Type,"
    "Total TCP Flow Time,Label,Attempted Category"
).split(",")
assert len(CIC_HEADER) == 91
CIC_ID = {"id", "Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol", "Timestamp", "Label",
          "Attempted Category"}


def cic_rows(n: int, label: str, seed: int, protocol: int = 6) -> list[list[str]]:
    """Rows of one class: heavy-tailed (lognormal) counts, sizes, times; attacks shifted."""
    rng = np.random.default_rng(seed)
    mu = {"BENIGN": 3.0, "DDoS": 6.0, "Portscan": 0.5, "Botnet": 4.5}[label]
    rows = []
    for i in range(n):
        r = []
        for c in CIC_HEADER:
            if c == "id":
                r.append(str(seed * 100_000 + i))
            elif c == "Flow ID":
                r.append(f"10.0.0.1-10.0.0.2-{1000 + i}-80-{protocol}")
            elif c in ("Src IP", "Dst IP"):
                r.append("10.0.0.1" if c == "Src IP" else "10.0.0.2")
            elif c in ("Src Port", "Dst Port"):
                r.append(str(1000 + i if c == "Src Port" else 80))
            elif c == "Protocol":
                r.append(str(protocol))
            elif c == "Timestamp":
                r.append("2017-07-06 12:39:06.818901")
            elif c == "Label":
                r.append(label)
            elif c in ("Attempted Category", "ICMP Code", "ICMP Type"):
                r.append("-1")
            elif c == "Down/Up Ratio":
                r.append(repr(float(rng.random() * 2)))
            else:
                r.append(str(int(rng.lognormal(mu, 1.2))) if rng.random() < 0.5 else repr(float(rng.lognormal(mu, 1.2))))
        rows.append(r)
    return rows


def write_cic_csv(path: Path, rows) -> None:
    text = ",".join(CIC_HEADER) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    path.write_bytes(gzip.compress(text.encode(), mtime=0))


def make_cic(root: Path) -> Path:
    d = root / "datasets" / "cic-ids2017-improved-sample"
    d.mkdir(parents=True, exist_ok=True)
    (d / "data_header_reference.csv").write_text(",".join(CIC_HEADER))
    benign = cic_rows(500, "BENIGN", 1, 6) + cic_rows(300, "BENIGN", 2, 17)
    benign += cic_rows(3, "BENIGN", 3, 1)  # ICMP rows: dropped by the loader
    benign.append(list(benign[0]))  # an exact duplicate: dropped
    write_cic_csv(d / "BENIGN_804.csv.gz", benign)
    write_cic_csv(d / "DDoS_200.csv.gz", cic_rows(200, "DDoS", 4))
    write_cic_csv(d / "Portscan_200.csv.gz", cic_rows(200, "Portscan", 5))
    write_cic_csv(d / "Botnet_30.csv.gz", cic_rows(30, "Botnet", 6))
    return root


# ---- netanom flow exports (the header of `netanom features`) ------------------------------------
FLOW_ID_COLUMNS = ["Flow ID", "Src IP", "Src Port", "Dst IP", "Dst Port", "Protocol", "Timestamp"]


def flow_feature_names() -> list[str]:
    from netanom_models import schema

    return [f.name for f in schema.load_schema()]


def flow_rows(n: int, kind: str, seed: int) -> list[list[str]]:
    """Flow CSV rows: `benign` flows are short TCP/UDP sessions of varied sizes; `attack` flows
    are single-packet SYNs from many sources with a large initial window."""
    names = flow_feature_names()
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        f = dict.fromkeys(names, 0.0)
        if kind == "benign":
            proto = int(rng.choice([6, 17]))
            fwd, bwd = int(rng.integers(1, 12)), int(rng.integers(0, 12))
            f.update({"Flow Duration": float(rng.integers(10, 5_000_000)), "Total Fwd Packet": fwd,
                      "Total Bwd packets": bwd, "Total Length of Fwd Packet": float(rng.integers(0, 3000)),
                      "Total Length of Bwd Packet": float(rng.integers(0, 60000)), "protocol": proto,
                      "FWD Init Win Bytes": 64240 if proto == 6 else 0, "Fwd Seg Size Min": 20 if proto == 6 else 8,
                      "ICMP Code": -1, "ICMP Type": -1, "fwd_frame_bytes": float(rng.integers(60, 4000)),
                      "Down/Up Ratio": bwd / fwd})
            src, sport, dst, dport = f"198.18.1.{2 + i % 5}", 40000 + i, "198.18.3.2", int(rng.choice([53, 80, 443]))
        else:
            f.update({"Total Fwd Packet": 1, "SYN Flag Count": 1, "protocol": 6, "FWD Init Win Bytes": 1024,
                      "Fwd Header Length": 40, "Fwd Seg Size Min": 40, "ICMP Code": -1, "ICMP Type": -1,
                      "fwd_frame_bytes": 74})
            src, sport, dst, dport = f"198.19.{i // 250}.{i % 250}", 1024 + i, "198.18.3.2", 25565
        proto = int(f["protocol"])
        ids = [f"{src}-{dst}-{sport}-{dport}-{proto}", src, str(sport), dst, str(dport), str(proto),
               "2026-01-01 00:00:00.000000"]
        rows.append(ids + [repr(float(f[c])) if isinstance(f[c], float) and not float(f[c]).is_integer()
                           else str(int(f[c])) for c in names] + ["idle_timeout"])
    return rows


def write_flows(path: Path, rows) -> Path:
    header = FLOW_ID_COLUMNS + flow_feature_names() + ["End Reason"]
    path.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def flows_spec_small(inputs, name="site"):
    from netanom_models.flows import flows_spec

    return flows_spec([Path(p) for p in inputs], name=name)


def train_given(spec, out: Path, **kw):
    """Trains a csv/flows spec with the test suite's small forests."""
    from netanom_models.train import TrainConfig, train

    return train(TrainConfig(dataset=spec.name, out_dir=out, max_epochs=kw.pop("max_epochs", 4), quiet=True,
                             spec=spec, **SMALL, **kw))


@pytest.fixture(scope="session")
def site_flows(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("flows")
    return [write_flows(d / "site-a.csv", flow_rows(160, "benign", 1)),
            write_flows(d / "site-b.csv", flow_rows(60, "benign", 2))]


@pytest.fixture(scope="session")
def trained_flows(site_flows, tmp_path_factory):
    return train_given(flows_spec_small(site_flows), tmp_path_factory.mktemp("flows_bundle") / "site")
