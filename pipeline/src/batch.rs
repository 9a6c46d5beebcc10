//! The canonical `reviews` schema that every reader maps its format onto, and the builder of its Arrow batches.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, Int32Builder, StringBuilder, UInt64Builder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::dump::COLUMNS;

/// Column indexes into [`COLUMNS`] that readers fill specially.
pub const STAR_RATING: usize = 7;
pub const HELPFUL_VOTES: usize = 8;
pub const TOTAL_VOTES: usize = 9;
pub const PRODUCT_CATEGORY: usize = 6;
/// The column after the dump's own: where the row is in the job's inputs (see [`position`]).
pub const ROW_POSITION: usize = COLUMNS.len();
pub const ROW_POSITION_NAME: &str = "row_position";

/// A row's place in the job's inputs: the object's index in the sorted input list in the top 24 bits, its line
/// (1-based; a Parquet file's row) in the low 40. Sorting by it gives input order whatever the partitioning, which
/// is the order of records within a prepare shard.
pub fn position(object: usize, line: u64) -> u64 {
    ((object as u64) << 40) | (line & ((1 << 40) - 1))
}

/// The object index of a [`position`].
pub fn position_object(position: u64) -> usize {
    (position >> 40) as usize
}

/// Rows per batch, DataFusion's default batch size.
pub const BATCH_ROWS: usize = 8192;

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let fields = COLUMNS.iter().enumerate().map(|(i, &name)| match i {
        // Valid rows always have a rating in 1..=5.
        STAR_RATING => Field::new(name, DataType::Int32, false),
        // Vote counts the source does not record (total votes in the McAuley 2018/2023 layouts) are null.
        HELPFUL_VOTES | TOTAL_VOTES => Field::new(name, DataType::Int32, true),
        // Text stays text, review_date included (ISO `YYYY-MM-DD`): a value is kept as the dump has it.
        _ => Field::new(name, DataType::Utf8, true),
    });
    let position = Field::new(ROW_POSITION_NAME, DataType::UInt64, false);
    Arc::new(Schema::new(fields.chain([position]).collect::<Vec<_>>()))
});

/// The `reviews` table's schema: the AWS TSV columns, with ratings and vote counts as integers, then
/// `row_position` (see [`position`]).
pub fn schema() -> SchemaRef {
    Arc::clone(&SCHEMA)
}

/// Whether a canonical column holds text (all but the rating and vote counts).
pub fn is_text_column(name: &str) -> bool {
    SCHEMA.field_with_name(name).is_ok_and(|f| f.data_type() == &DataType::Utf8)
}

/// One valid review as a reader sees it: text fields by column index, and the parsed numbers.
#[derive(Debug, Default)]
pub struct Review<'a> {
    /// Text of each column; `None` is null. The numeric columns' entries are ignored.
    pub text: [Option<&'a str>; COLUMNS.len()],
    pub star_rating: i32,
    pub helpful_votes: Option<i32>,
    pub total_votes: Option<i32>,
    /// See [`position`].
    pub position: u64,
}

enum Column {
    Text(StringBuilder),
    Int(Int32Builder),
    Position(UInt64Builder),
}

/// Builds batches of the projected canonical columns. Only projected columns are built at all, which is most of
/// the speed of a scan that needs three columns out of fifteen.
pub struct BatchBuilder {
    /// Canonical column index of each output column.
    projection: Vec<usize>,
    columns: Vec<Column>,
    schema: SchemaRef,
    rows: usize,
}

impl BatchBuilder {
    pub fn new(projection: &[usize]) -> Self {
        let schema = Arc::new(schema().project(projection).expect("projection within the canonical schema"));
        let mut builder = BatchBuilder { projection: projection.to_vec(), columns: Vec::new(), schema, rows: 0 };
        builder.reset();
        builder
    }

    fn reset(&mut self) {
        self.columns = self
            .projection
            .iter()
            .map(|&i| match i {
                STAR_RATING | HELPFUL_VOTES | TOTAL_VOTES => Column::Int(Int32Builder::with_capacity(BATCH_ROWS)),
                ROW_POSITION => Column::Position(UInt64Builder::with_capacity(BATCH_ROWS)),
                _ => Column::Text(StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 64)),
            })
            .collect();
        self.rows = 0;
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn is_full(&self) -> bool {
        self.rows >= BATCH_ROWS
    }

    pub fn push(&mut self, review: &Review<'_>) {
        for (column, &i) in self.columns.iter_mut().zip(&self.projection) {
            match column {
                Column::Int(b) => b.append_option(match i {
                    STAR_RATING => Some(review.star_rating),
                    HELPFUL_VOTES => review.helpful_votes,
                    _ => review.total_votes,
                }),
                Column::Text(b) => b.append_option(review.text[i]),
                Column::Position(b) => b.append_value(review.position),
            }
        }
        self.rows += 1;
    }

    /// The rows pushed so far as a batch; the builder starts empty again.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = self.rows;
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|column| match column {
                Column::Int(b) => Arc::new(b.finish()) as ArrayRef,
                Column::Text(b) => Arc::new(b.finish()) as ArrayRef,
                Column::Position(b) => Arc::new(b.finish()) as ArrayRef,
            })
            .collect();
        self.reset();
        // The row count is explicit so that an empty projection (`SELECT count(*)`) still carries its rows.
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_only_the_projected_columns() {
        let mut builder = BatchBuilder::new(&[STAR_RATING, 13]);
        let mut review = Review { star_rating: 4, helpful_votes: Some(2), ..Default::default() };
        review.text[13] = Some("Gut. Sehr gut — ünd schön");
        builder.push(&review);
        let batch = builder.finish().unwrap();
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema().field(0).name(), "star_rating");
        assert_eq!(batch.schema().field(1).name(), "review_body");
        assert!(builder.is_empty());

        let mut count_only = BatchBuilder::new(&[]);
        count_only.push(&review);
        count_only.push(&review);
        assert_eq!(count_only.finish().unwrap().num_rows(), 2);
    }
}
