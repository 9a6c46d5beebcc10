//! `TallyExec`: counts the rows the query dropped, by reason and rating, and passes its input on (with `count`
//! NULL: those rows are counted already). Filtering the dropped rows out here would copy the kept rows' text, most
//! of the job's bytes; the shard writers skip them instead.
//!
//! The counts travel in the data stream, not beside it: after its input ends, each partition emits a few tally rows
//! (`dropped` = the reason, `count` = how many rows), which reach the shard writers with the records and come back
//! in their result. That keeps the whole job one plan with one scan, and works the same when the partitions run in
//! other processes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, RecordBatch, StringArray, UInt64Array, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;

/// The column that names why a row was dropped (NULL for kept rows).
pub const DROPPED: &str = "dropped";
/// The column a tally node adds: the number of rows a tally row stands for (NULL for records).
pub const COUNT: &str = "count";

#[derive(Debug)]
pub struct TallyExec {
    input: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl TallyExec {
    /// `input` must have a text `dropped` column and an Int32 `star_rating` column. Text columns come out as Utf8,
    /// whichever string type the query gave them (DataFusion casts to VARCHAR as Utf8View).
    pub fn try_new(input: Arc<dyn ExecutionPlan>) -> DfResult<Self> {
        let in_schema = input.schema();
        for (name, ty) in [(DROPPED, DataType::Utf8), ("star_rating", DataType::Int32)] {
            let field = in_schema.field_with_name(name)?;
            if utf8(field.data_type()) != ty {
                return Err(DataFusionError::Plan(format!(
                    "TallyExec: column {name} is {}, not {ty}",
                    field.data_type()
                )));
            }
        }
        let mut fields: Vec<Field> = in_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_data_type(utf8(f.data_type())).with_nullable(true))
            .collect();
        fields.push(Field::new(COUNT, DataType::UInt64, true));
        let schema = Arc::new(Schema::new(fields));
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            input.output_partitioning().clone(),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(TallyExec { input, properties: Arc::new(properties) })
    }
}

impl DisplayAs for TallyExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TallyExec: counts rows by ({DROPPED}, star_rating), then adds a row per count")
    }
}

impl ExecutionPlan for TallyExec {
    fn name(&self) -> &str {
        "TallyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] =
            <[_; 1]>::try_from(children).map_err(|_| DataFusionError::Internal("TallyExec has one child".into()))?;
        Ok(Arc::new(TallyExec::try_new(input)?))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> DfResult<SendableRecordBatchStream> {
        let mut input = self.input.execute(partition, context)?;
        let schema = self.schema();
        let mut builder = RecordBatchReceiverStreamBuilder::new(Arc::clone(&schema), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let mut tally: BTreeMap<(String, i32), u64> = BTreeMap::new();
            while let Some(batch) = input.next().await {
                let batch = to_utf8(batch?, &schema)?;
                count_dropped(&batch, &mut tally);
                if batch.num_rows() > 0 && tx.send(Ok(with_count(batch, &schema)?)).await.is_err() {
                    return Ok(());
                }
            }
            if !tally.is_empty() {
                let _ = tx.send(tally_batch(&tally, &schema)).await;
            }
            Ok(())
        });
        Ok(builder.build())
    }
}

/// Every string type as Utf8.
fn utf8(ty: &DataType) -> DataType {
    match ty {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        other => other.clone(),
    }
}

/// A batch of the input with its text columns cast to Utf8 (all columns of `schema` but `count`).
fn to_utf8(batch: RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    if batch.columns().iter().all(|c| c.data_type() == &utf8(c.data_type())) {
        return Ok(batch);
    }
    let columns = batch.columns().iter().map(|c| cast(c, &utf8(c.data_type()))).collect::<Result<Vec<_>, _>>()?;
    let fields: Vec<Field> = schema.fields().iter().take(columns.len()).map(|f| f.as_ref().clone()).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// Adds the dropped rows of `batch` to `tally`.
fn count_dropped(batch: &RecordBatch, tally: &mut BTreeMap<(String, i32), u64>) {
    let dropped = batch.column_by_name(DROPPED).expect("checked in try_new").as_string::<i32>();
    let ratings = batch.column_by_name("star_rating").expect("checked in try_new").as_primitive::<Int32Type>();
    if dropped.null_count() == dropped.len() {
        return;
    }
    // Counted per batch first: a few reasons and ratings, so a short list beats a map lookup (and a String) per row.
    let mut counts: Vec<((&str, i32), u64)> = Vec::new();
    for i in (0..dropped.len()).filter(|&i| dropped.is_valid(i)) {
        let key = (dropped.value(i), ratings.value(i));
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    for ((reason, rating), n) in counts {
        *tally.entry((reason.to_owned(), rating)).or_default() += n;
    }
}

/// Records with a NULL `count`.
fn with_count(batch: RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(new_null_array(&DataType::UInt64, batch.num_rows()));
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// One row per (reason, rating): NULL everywhere but `dropped`, `star_rating` and `count`.
fn tally_batch(tally: &BTreeMap<(String, i32), u64>, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let rows = tally.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            match field.name().as_str() {
                DROPPED => Arc::new(tally.keys().map(|(reason, _)| Some(reason.as_str())).collect::<StringArray>()),
                "star_rating" => Arc::new(tally.keys().map(|&(_, rating)| Some(rating)).collect::<Int32Array>()),
                COUNT => Arc::new(tally.values().map(|&n| Some(n)).collect::<UInt64Array>()),
                _ => new_null_array(field.data_type(), rows),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
