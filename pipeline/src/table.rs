//! The `reviews` table: every input object of a job, in whatever format, as one DataFusion table with the
//! canonical schema. Its scan reads with our own decoders (see [`crate::decode`]), so malformed rows are counted
//! and quarantined instead of failing the query or merging rows the way a quote-aware CSV reader does.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use tokio::runtime::Handle;

use crate::batch;
use crate::cluster::rows::RowsReport;
use crate::decode::{self, BytesRead};
use crate::quarantine::RowLog;
use crate::row_filter::RowFilter;
use crate::source::Input;

/// The inputs of a job as a table.
#[derive(Clone)]
pub struct ReviewsTable {
    pub(crate) inputs: Arc<Vec<Input>>,
    log: RowLog,
    bytes_read: BytesRead,
    /// On a cluster: where each object's row counts and quarantined rows go, since the scan runs in an executor
    /// process whose [`RowLog`] the client never sees.
    pub(crate) rows_report: Option<RowsReport>,
}

impl fmt::Debug for ReviewsTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReviewsTable").field("inputs", &self.inputs.len()).finish()
    }
}

impl ReviewsTable {
    pub fn new(inputs: Vec<Input>, log: RowLog, bytes_read: BytesRead) -> Self {
        ReviewsTable { inputs: Arc::new(inputs), log, bytes_read, rows_report: None }
    }

    /// The table as a cluster runs it: each object's counts and quarantined rows are reported to `report`.
    pub fn reporting_rows(self, report: RowsReport) -> Self {
        ReviewsTable { rows_report: Some(report), ..self }
    }
}

#[async_trait]
impl TableProvider for ReviewsTable {
    fn schema(&self) -> SchemaRef {
        batch::schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Comparisons of the integer columns with constants are applied in the scan (see [`crate::row_filter`]).
    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match RowFilter::from_expr(f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let projection = projection.cloned().unwrap_or_else(|| (0..batch::schema().fields().len()).collect());
        // Only the filters claimed as exact above arrive here.
        let filters = filters
            .iter()
            .map(|f| {
                RowFilter::from_expr(f)
                    .ok_or_else(|| DataFusionError::Internal(format!("ReviewsScan: filter {f} was not pushed down")))
            })
            .collect::<DfResult<_>>()?;
        let partitions = state.config().target_partitions().max(1);
        Ok(Arc::new(ReviewsScan::new(self.clone(), projection, filters, partitions)))
    }
}

/// Reads the inputs in partitions of whole objects: a gzipped object cannot be split, and one object per task
/// keeps the bookkeeping of line numbers exact. Objects are spread over partitions by size, largest first.
#[derive(Debug)]
pub struct ReviewsScan {
    pub(crate) table: ReviewsTable,
    pub(crate) projection: Vec<usize>,
    /// Rows that fail one of these are dropped as they are read.
    pub(crate) filters: Vec<RowFilter>,
    /// Input indexes read by each group, in order.
    pub(crate) groups: Vec<Vec<usize>>,
    /// On a cluster: the groups that this plan's partitions read, as data: an in-memory scan whose partition `p`
    /// holds the index of the group that partition `p` reads. Ballista's scheduler gives each task only its own
    /// partitions of the leaves it knows (such as this in-memory scan), but runs every partition of a leaf it
    /// does not know (such as this scan without a child) in every task, which would read every object once per
    /// task. With the child, the scan is not a leaf, and a task's slice of the child is its slice of the groups.
    selector: Option<Arc<dyn ExecutionPlan>>,
    properties: Arc<PlanProperties>,
}

impl ReviewsScan {
    fn new(table: ReviewsTable, projection: Vec<usize>, filters: Vec<RowFilter>, max_partitions: usize) -> Self {
        let groups = balance(&table.inputs, max_partitions);
        // On a cluster (the table reports rows) each partition reads one group.
        let selector = table.rows_report.is_some().then(|| group_selector(groups.len()));
        Self::decoded(table, projection, filters, groups, selector)
    }

    /// A scan as a plan carries it: its groups, and on a cluster the selector of the groups its partitions read
    /// (see [`ReviewsScan::selector`]).
    pub(crate) fn decoded(
        table: ReviewsTable,
        projection: Vec<usize>,
        filters: Vec<RowFilter>,
        groups: Vec<Vec<usize>>,
        selector: Option<Arc<dyn ExecutionPlan>>,
    ) -> Self {
        let schema = Arc::new(batch::schema().project(&projection).expect("projection from DataFusion"));
        let partitions = selector.as_ref().map_or(groups.len().max(1), |s| s.output_partitioning().partition_count());
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        ReviewsScan { table, projection, filters, groups, selector, properties: Arc::new(properties) }
    }
}

/// `GROUP` (UInt32): the selector's one column.
const GROUP: &str = "group";

/// An in-memory scan of `groups` partitions, partition `g` holding one row: `g`.
fn group_selector(groups: usize) -> Arc<dyn ExecutionPlan> {
    let schema = Arc::new(Schema::new(vec![Field::new(GROUP, DataType::UInt32, false)]));
    let partitions: Vec<Vec<RecordBatch>> = (0..groups.max(1))
        .map(|g| {
            let column: ArrayRef = Arc::new(UInt32Array::from(vec![g as u32]));
            vec![RecordBatch::try_new(Arc::clone(&schema), vec![column]).expect("one u32 column")]
        })
        .collect();
    MemorySourceConfig::try_new_exec(&partitions, schema, None).expect("an in-memory scan")
}

/// Splits inputs into at most `max` groups of about equal bytes (longest processing time first).
fn balance(inputs: &[Input], max: usize) -> Vec<Vec<usize>> {
    let n = inputs.len().min(max).max(1);
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].size));
    let mut groups = vec![(0u64, Vec::new()); n];
    for i in order {
        let lightest = groups.iter_mut().min_by_key(|(bytes, _)| *bytes).expect("at least one group");
        lightest.0 += inputs[i].size;
        lightest.1.push(i);
    }
    groups
        .into_iter()
        .map(|(_, mut members)| {
            members.sort_unstable();
            members
        })
        .collect()
}

impl DisplayAs for ReviewsScan {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let schema = crate::batch::schema();
        let columns: Vec<&str> = self.projection.iter().map(|&i| schema.field(i).name().as_str()).collect();
        write!(
            f,
            "ReviewsScan: objects={}, partitions={}, projection=[{}]",
            self.table.inputs.len(),
            self.properties.partitioning.partition_count(),
            columns.join(", ")
        )?;
        if !self.filters.is_empty() {
            let filters: Vec<String> = self.filters.iter().map(RowFilter::to_string).collect();
            write!(f, ", filters=[{}]", filters.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ReviewsScan {
    fn name(&self) -> &str {
        "ReviewsScan"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.selector.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        match (&self.selector, <[_; 1]>::try_from(children)) {
            (None, Err(none)) if none.is_empty() => Ok(self),
            (Some(_), Ok([selector])) => Ok(Arc::new(ReviewsScan::decoded(
                self.table.clone(),
                self.projection.clone(),
                self.filters.clone(),
                self.groups.clone(),
                Some(selector),
            ))),
            _ => Err(DataFusionError::Internal("ReviewsScan: wrong number of children".into())),
        }
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let schema = Arc::clone(self.properties.eq_properties.schema());
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema, 2);
        let tx = builder.tx();
        let table = self.table.clone();
        let projection = self.projection.clone();
        let filters = self.filters.clone();
        let handle = Handle::current();
        let Some(selector) = &self.selector else {
            let objects = self.groups.get(partition).cloned().unwrap_or_default();
            builder.spawn_blocking(move || read_objects(&table, &projection, &filters, objects, &handle, &tx));
            return Ok(builder.build());
        };
        let mut selected = selector.execute(partition, context)?;
        let groups = self.groups.clone();
        builder.spawn(async move {
            let mut objects = Vec::new();
            while let Some(batch) = selected.next().await {
                let batch = batch?;
                let ids = batch.column(0).as_primitive::<UInt32Type>();
                for g in ids.values() {
                    objects.extend(groups.get(*g as usize).into_iter().flatten().copied());
                }
            }
            tokio::task::spawn_blocking(move || read_objects(&table, &projection, &filters, objects, &handle, &tx))
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?
        });
        Ok(builder.build())
    }
}

/// Reads `objects` (input indexes) in order into `tx`, on a blocking thread.
fn read_objects(
    table: &ReviewsTable,
    projection: &[usize],
    filters: &[RowFilter],
    objects: Vec<usize>,
    handle: &Handle,
    tx: &tokio::sync::mpsc::Sender<DfResult<RecordBatch>>,
) -> DfResult<()> {
    let mut emit = |batch| tx.blocking_send(Ok(batch)).is_ok();
    let external = |e: crate::Error| DataFusionError::External(Box::new(e));
    for i in objects {
        let input = &table.inputs[i];
        // On a cluster each object gets a log of its own, reported when the object is done.
        let reported = table.rows_report.as_ref().map(|r| r.object_log(i)).transpose().map_err(external)?;
        let mut sink = decode::Sink {
            handle,
            log: reported.as_ref().map_or(&table.log, |(log, _)| log),
            bytes_read: &table.bytes_read,
            projection,
            object: i,
            filters,
            emit: &mut emit,
        };
        decode::read(input, &mut sink).map_err(external)?;
        if let (Some(report), Some((log, _))) = (&table.rows_report, &reported) {
            report.put_object(handle, i, &input.url, log).map_err(external)?;
        }
        if tx.is_closed() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_by_size() {
        let sizes = [100u64, 10, 60, 50];
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let inputs: Vec<Input> = sizes
            .iter()
            .map(|&size| Input {
                url: format!("memory:///{size}.tsv"),
                store_url: url::Url::parse("memory:///").unwrap(),
                store: Arc::clone(&store),
                location: object_store::path::Path::from(format!("{size}.tsv")),
                size,
                e_tag: None,
                kind: crate::source::Kind::Tsv,
                gzip: false,
                partition_values: Vec::new(),
            })
            .collect();
        // 100 | 60, then 50 joins 60, then 10 joins 100: 110 bytes each.
        assert_eq!(balance(&inputs, 2), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(balance(&inputs, 8).len(), 4);
        assert_eq!(balance(&[], 2), vec![Vec::<usize>::new()]);
    }
}
