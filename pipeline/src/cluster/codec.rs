//! How our plan nodes travel between the client, the scheduler and the executors.
//!
//! The scheduler and the executors decode every plan with one codec, so ours handles our nodes and hands every
//! other node to Ballista's codec (its shuffle readers and writers are in every stage). Our nodes are JSON
//! behind a magic prefix that no protobuf message starts with in practice. The scan carries its inputs by URL and
//! store options, never credentials: each executor builds its stores from its own environment, as the client does.
//!
//! Our SQL functions travel by name. An executor resolves a function from its registry first, and the ones it
//! lacks (ours) through [`RevgenCodec::try_decode_udf`], so no registry needs to be set up for them.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_core::serde::BallistaPhysicalExtensionCodec;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use object_store::path::Path as ObjectPath;
use serde::{Deserialize, Serialize};
use url::Url;

use super::RemoteDir;
use crate::decode::BytesRead;
use crate::prepare::shard::{Gather, ShardOptions, ShardWriterExec};
use crate::prepare::tally::TallyExec;
use crate::prepare::{Tokenize, udf};
use crate::quarantine::RowLog;
use crate::row_filter::RowFilter;
use crate::source::{self, Input, Kind, StoreOptions};
use crate::table::{ReviewsScan, ReviewsTable};

/// What every node of ours starts with on the wire.
const MAGIC: &[u8] = b"\xffrevgen\x01";

/// Our nodes, as they travel.
#[derive(Serialize, Deserialize)]
enum Node {
    Scan(ScanNode),
    Tally,
    ShardWriter(ShardWriterNode),
}

#[derive(Serialize, Deserialize)]
struct ScanNode {
    inputs: Vec<InputNode>,
    options: StoreOptions,
    projection: Vec<usize>,
    filters: Vec<RowFilter>,
    groups: Vec<Vec<usize>>,
    rows_report: RemoteDir,
}

#[derive(Serialize, Deserialize)]
struct InputNode {
    url: String,
    store_url: String,
    location: String,
    size: u64,
    e_tag: Option<String>,
    kind: Kind,
    gzip: bool,
    partition_values: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct ShardWriterNode {
    /// Where the shard files go: the staging directory itself when every machine mounts it, else an object-store
    /// staging prefix that each executor uploads its finished shards to.
    staging: Option<PathBuf>,
    upload: Option<RemoteDir>,
    gather: Gather,
    shards: u32,
    parquet: bool,
    tokenizer: Option<String>,
}

/// Our codec, with Ballista's behind it.
pub struct RevgenCodec {
    ballista: BallistaPhysicalExtensionCodec,
    /// The tokenizer that shard writers use with `--tokenize` (executors; the client only encodes).
    tokenizer: Option<Arc<dyn Tokenize>>,
}

impl fmt::Debug for RevgenCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevgenCodec").field("tokenizer", &self.tokenizer.as_ref().map(|t| t.name())).finish()
    }
}

impl RevgenCodec {
    pub fn new(tokenizer: Option<Arc<dyn Tokenize>>) -> Self {
        RevgenCodec { ballista: BallistaPhysicalExtensionCodec::default(), tokenizer }
    }

    fn encode_node(node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Node>> {
        if let Some(scan) = node.downcast_ref::<ReviewsScan>() {
            let table = &scan.table;
            let rows_report = table.rows_report.clone().ok_or_else(|| {
                DataFusionError::Plan("a reviews scan sent to a cluster needs a place for its row counts".into())
            })?;
            let inputs = table
                .inputs
                .iter()
                .map(|i| InputNode {
                    url: i.url.clone(),
                    store_url: i.store_url.to_string(),
                    location: i.location.to_string(),
                    size: i.size,
                    e_tag: i.e_tag.clone(),
                    kind: i.kind,
                    gzip: i.gzip,
                    partition_values: i.partition_values.clone(),
                })
                .collect();
            return Ok(Some(Node::Scan(ScanNode {
                inputs,
                options: rows_report.options.clone(),
                projection: scan.projection.clone(),
                filters: scan.filters.clone(),
                groups: scan.groups.clone(),
                rows_report,
            })));
        }
        if node.downcast_ref::<TallyExec>().is_some() {
            return Ok(Some(Node::Tally));
        }
        if let Some(writer) = node.downcast_ref::<ShardWriterExec>() {
            let options = writer.options();
            return Ok(Some(Node::ShardWriter(ShardWriterNode {
                staging: options.upload.is_none().then(|| options.staging.clone()),
                upload: options.upload.clone(),
                gather: options.gather,
                shards: options.shards,
                parquet: options.parquet,
                tokenizer: options.tokenizer.as_ref().map(|t| t.name().to_owned()),
            })));
        }
        Ok(None)
    }

    fn decode_node(&self, node: Node, inputs: &[Arc<dyn ExecutionPlan>]) -> DfResult<Arc<dyn ExecutionPlan>> {
        let child = || {
            inputs.first().cloned().ok_or_else(|| DataFusionError::Internal("a revgen node without its input".into()))
        };
        Ok(match node {
            Node::Scan(scan) => Arc::new(decode_scan(scan, inputs.first().cloned())?),
            Node::Tally => Arc::new(TallyExec::try_new(child()?)?),
            Node::ShardWriter(writer) => {
                let tokenizer = match writer.tokenizer {
                    None => None,
                    Some(name) => match &self.tokenizer {
                        Some(t) if t.name() == name => Some(Arc::clone(t)),
                        _ => {
                            return Err(DataFusionError::Plan(format!(
                                "this executor has no tokenizer {name:?} for --tokenize"
                            )));
                        }
                    },
                };
                let staging = match writer.staging {
                    Some(dir) => dir,
                    // Each task writes into a directory of its own, then uploads.
                    None => task_staging_dir()?,
                };
                let options = ShardOptions {
                    gather: writer.gather,
                    staging,
                    shards: writer.shards,
                    parquet: writer.parquet,
                    tokenizer,
                    upload: writer.upload,
                };
                Arc::new(ShardWriterExec::try_new(child()?, options)?)
            }
        })
    }
}

fn task_staging_dir() -> DfResult<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("revgen-shards-{}-{}", std::process::id(), nanos.as_nanos()));
    std::fs::create_dir_all(&dir).map_err(DataFusionError::IoError)?;
    Ok(dir)
}

/// The scan, with its group selector (see `ReviewsScan`) as decoded by the framework.
fn decode_scan(scan: ScanNode, selector: Option<Arc<dyn ExecutionPlan>>) -> DfResult<ReviewsScan> {
    let mut stores = HashMap::new();
    let mut inputs = Vec::with_capacity(scan.inputs.len());
    for i in scan.inputs {
        let store_url = Url::parse(&i.store_url).map_err(|e| DataFusionError::Plan(format!("{}: {e}", i.url)))?;
        let store = match stores.get(&i.store_url) {
            Some(store) => Arc::clone(store),
            None => {
                let (_, store) = source::open_store(&store_url, &scan.options, &i.url)
                    .map_err(|e| DataFusionError::External(Box::new(e)))?;
                stores.insert(i.store_url.clone(), Arc::clone(&store));
                store
            }
        };
        inputs.push(Input {
            url: i.url,
            store_url,
            store,
            location: ObjectPath::from(i.location),
            size: i.size,
            e_tag: i.e_tag,
            kind: i.kind,
            gzip: i.gzip,
            partition_values: i.partition_values,
        });
    }
    // The executor's own log and progress counter: what the client needs comes back through the rows report.
    let table = ReviewsTable::new(inputs, RowLog::counting(), BytesRead::default()).reporting_rows(scan.rows_report);
    Ok(ReviewsScan::decoded(table, scan.projection, scan.filters, scan.groups, selector))
}

impl PhysicalExtensionCodec for RevgenCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match buf.strip_prefix(MAGIC) {
            Some(json) => {
                let node: Node = serde_json::from_slice(json)
                    .map_err(|e| DataFusionError::Plan(format!("decoding a revgen plan node: {e}")))?;
                self.decode_node(node, inputs)
            }
            None => self.ballista.try_decode(buf, inputs, ctx, proto_converter),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        match Self::encode_node(&node)? {
            Some(ours) => {
                buf.extend_from_slice(MAGIC);
                serde_json::to_writer(buf, &ours).map_err(|e| DataFusionError::Plan(format!("encoding a plan: {e}")))
            }
            None => self.ballista.try_encode(node, buf, proto_converter),
        }
    }

    fn try_decode_udf(&self, name: &str, _buf: &[u8]) -> DfResult<Arc<ScalarUDF>> {
        udf::all()
            .into_iter()
            .find(|f| f.name() == name)
            .map(Arc::new)
            .ok_or_else(|| DataFusionError::Plan(format!("unknown SQL function {name:?} in a plan")))
    }

    fn try_encode_udf(&self, _node: &ScalarUDF, _buf: &mut Vec<u8>) -> DfResult<()> {
        // By name (see the module comment): nothing to write.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{CsvReadOptions, SessionContext};
    use datafusion_proto::physical_plan::{AsExecutionPlan, DefaultPhysicalExtensionCodec};
    use datafusion_proto::protobuf::PhysicalPlanNode;

    use super::*;
    use crate::cluster::Cluster;
    use crate::query::{Params, Reviews};
    use crate::synth::{SynthConfig, write_dump};

    fn round_trip(
        plan: Arc<dyn ExecutionPlan>,
        codec: &dyn PhysicalExtensionCodec,
        ctx: &TaskContext,
    ) -> Arc<dyn ExecutionPlan> {
        let proto = PhysicalPlanNode::try_from_physical_plan(plan, codec).unwrap();
        proto.try_into_physical_plan(ctx, codec).unwrap()
    }

    /// The plan an executor decodes reads the gzip input as the client's plan does, and reports its rows.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gzip_scan_survives_the_wire_and_reports_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("amazon_reviews_us_Toys_v1_00.tsv.gz");
        let config = SynthConfig { rows: 300, malformed_rate: 0.05, ..Default::default() };
        write_dump(&config, &path).unwrap();
        let specs = [path.to_string_lossy().into_owned()];
        let sql = "SELECT star_rating, count(*) AS n, sum(length(review_body)) AS chars FROM reviews \
                   GROUP BY star_rating ORDER BY star_rating";

        let local = Reviews::open(&specs, &StoreOptions::default(), RowLog::counting()).await.unwrap();
        let expected = local.sql(sql, &Params::default()).await.unwrap();

        let mut remote = Reviews::open(&specs, &StoreOptions::default(), RowLog::counting()).await.unwrap();
        let scratch = RemoteDir::new(&dir.path().join("scratch").to_string_lossy(), StoreOptions::default()).unwrap();
        remote.on_cluster(Cluster::parse("df://127.0.0.1:1").unwrap(), scratch.clone()).unwrap();
        let plan = remote.dataframe(sql, &Params::default()).await.unwrap().create_physical_plan().await.unwrap();
        let decoded = round_trip(Arc::clone(&plan), &RevgenCodec::new(None), &remote.ctx.task_ctx());
        assert_eq!(
            displayable(plan.as_ref()).indent(true).to_string(),
            displayable(decoded.as_ref()).indent(true).to_string()
        );
        let batches = collect(decoded, remote.ctx.task_ctx()).await.unwrap();
        assert_eq!(
            datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string(),
            datafusion::arrow::util::pretty::pretty_format_batches(&expected).unwrap().to_string()
        );
        // The decoded scan counted into the scratch directory, not into the client's log.
        assert_eq!(remote.counts().rows_read, 0);
        let objects: Vec<String> = remote.inputs.iter().map(|i| i.url.clone()).collect();
        scratch.join("rows").gather(&objects, &remote.log).await.unwrap();
        assert_eq!(remote.counts(), local.counts());
        assert!(local.counts().malformed > 0);
    }

    /// The upstream bug this codec exists for (docs/upstream-csv-compression.md): DataFusion's own CSV scan comes
    /// back from the wire without its gzip compression. When this fails, the upstream fix has arrived.
    #[tokio::test]
    async fn the_stock_csv_scan_loses_its_gzip_compression_on_the_wire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv.gz");
        let mut gz =
            flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
        gz.write_all(b"a,b\n1,2\n").unwrap();
        gz.finish().unwrap();
        let ctx = SessionContext::new();
        let options = CsvReadOptions::new().file_extension(".csv.gz").file_compression_type(
            datafusion::datasource::file_format::file_compression_type::FileCompressionType::GZIP,
        );
        let plan = ctx.read_csv(path.to_str().unwrap(), options).await.unwrap().create_physical_plan().await.unwrap();
        let rows: usize = collect(Arc::clone(&plan), ctx.task_ctx()).await.unwrap().iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 1);
        let decoded = round_trip(plan, &DefaultPhysicalExtensionCodec {}, &ctx.task_ctx());
        let after = collect(decoded, ctx.task_ctx()).await;
        assert!(after.is_err(), "the decoded CSV scan read the gzip file: upstream is fixed, {after:?}");
    }
}
