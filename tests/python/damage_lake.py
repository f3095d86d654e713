"""Damages a cclake lake as two writers without the lease did, with the `deltalake` package
(no cclake code): blind appends of rows the lake already holds.

  fact_interactions: 30 events appended again as an older, different delivery (a day
                     earlier, duration + 1000 s: the stored one must win), and 20 exact copies
  conversations, session_metrics: 15 conversations appended again whole

Prints the numbers of rows appended, as JSON.
"""
import json
import sys

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

lake = sys.argv[1]
facts = DeltaTable(f"{lake}/fact_interactions").to_pyarrow_table()
older = facts.slice(0, 30)
older = older.set_column(
    older.schema.get_field_index("duration_seconds"), "duration_seconds", pc.add(older["duration_seconds"], 1000)
)
day = pa.scalar(86_400_000_000, pa.duration("us"))
older = older.set_column(
    older.schema.get_field_index("source_modified_at"), "source_modified_at", pc.subtract(older["source_modified_at"], day)
)
write_deltalake(f"{lake}/fact_interactions", older, mode="append")
copies = facts.slice(40, 20)
write_deltalake(f"{lake}/fact_interactions", copies, mode="append")
conversations = DeltaTable(f"{lake}/conversations").to_pyarrow_table().slice(0, 15)
write_deltalake(f"{lake}/conversations", conversations, mode="append")
metrics = DeltaTable(f"{lake}/session_metrics").to_pyarrow_table()
metrics = metrics.filter(pc.is_in(metrics["conversation_id"], value_set=conversations["conversation_id"]))
write_deltalake(f"{lake}/session_metrics", metrics, mode="append")
print(json.dumps({"fact_interactions": older.num_rows + copies.num_rows, "conversations": conversations.num_rows, "session_metrics": metrics.num_rows}))
