"""Writes the scored-run fixtures `tests/export.rs` and `tests/app.rs` read: `samples.parquet`,
the rows `flowtracer.ray` makes of `sample_traces/` (sources relative to the repository root), and
`broken_rows.parquet`, the same rows with a few made not to hold together. Run it from the
repository root after a change to the method or to the row format:

    python tests/scored/make.py
"""

import json

import pyarrow as pa
import pyarrow.parquet as pq

from flowtracer.ray import score_batch, trace_paths

rows = score_batch({"path": trace_paths("sample_traces")})
pq.write_table(rows, "tests/scored/samples.parquet")

broken = rows.to_pylist()
broken[0]["credit"] = broken[0]["credit"][:-1]
broken[1]["hubs"] = [999]
broken[2]["details"] = "{not json"
broken[3] = {**dict.fromkeys(rows.schema.names), "source": broken[3]["source"], "status": "failed", "problem": "row_sum", "error": f"{broken[3]['source']}: row 7 of the attention sums to 1.3"}
broken[4]["backbone_flow"] = broken[4]["backbone_flow"] + [0.5]
broken[5]["source"] = "/cluster/run/step_000099/sample_0000.safetensors"  # scored on another machine
pq.write_table(pa.Table.from_pylist(broken, schema=rows.schema), "tests/scored/broken_rows.parquet")
print(json.dumps({"rows": rows.num_rows}))
