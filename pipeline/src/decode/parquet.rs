//! Parquet: columns are matched by name and cast to the canonical types (the AWS files store ratings and votes
//! as integers and review_date as a date). Hive partition directories (`product_category=X/`) fill columns the
//! files leave out. Rows are validated like TSV lines: a null or non-numeric rating or vote count, or a rating
//! outside 1..=5, is malformed, quarantined under its 1-based row number.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, RecordBatch, StringArray, UInt64Array, new_null_array,
};
use datafusion::arrow::compute::{cast, filter};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatchOptions;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::parquet::arrow::ProjectionMask;
#[allow(deprecated)]
use datafusion::parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStreamBuilder};
use futures::StreamExt;

use super::Sink;
use crate::batch::{self, HELPFUL_VOTES, ROW_POSITION, STAR_RATING, TOTAL_VOTES};
use crate::dump::{COLUMNS, Malformed};
use crate::quarantine::{QuarantinedRow, RowCounts};
use crate::source::Input;
use crate::{Error, Result};

// parquet 59 deprecates ParquetObjectReader in favour of a hand-written AsyncFileReader; it is still the reader
// DataFusion 55 itself uses, and it does what this module needs.
#[allow(deprecated)]
pub fn read(input: &Input, sink: &mut Sink<'_>) -> Result<()> {
    let parquet_err = |source| Error::Parquet { path: input.url.clone().into(), source };
    let arrow_err = |source| Error::Arrow { path: input.url.clone().into(), source };
    let reader = ParquetObjectReader::new(Arc::clone(&input.store), input.location.clone()).with_file_size(input.size);
    let builder = sink.handle.block_on(ParquetRecordBatchStreamBuilder::new(reader)).map_err(parquet_err)?;
    let file_schema = Arc::clone(builder.schema());

    // Read the projected columns plus the ones every row is validated on.
    let mut needed: Vec<usize> = sink.projection.to_vec();
    needed.extend([STAR_RATING, HELPFUL_VOTES, TOTAL_VOTES]);
    let roots: Vec<usize> =
        needed.iter().filter(|&&i| i != ROW_POSITION).filter_map(|&i| file_schema.index_of(COLUMNS[i]).ok()).collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let total_rows = builder.metadata().file_metadata().num_rows().max(1) as u64;
    let mut stream = builder.with_projection(mask).with_batch_size(batch::BATCH_ROWS).build().map_err(parquet_err)?;

    let out_schema = Arc::new(batch::schema().project(sink.projection).expect("canonical projection"));
    let mut counts = RowCounts::default();
    let mut row_base = 0u64;
    let mut reported = 0u64;
    while let Some(file_batch) = sink.handle.block_on(stream.next()) {
        let file_batch = file_batch.map_err(parquet_err)?;
        let (object, first_row) = (sink.object, row_base);
        let column = |i: usize| match i {
            // A Parquet file's row number stands for the line.
            ROW_POSITION => Ok(Arc::new(UInt64Array::from_iter_values(
                (0..file_batch.num_rows()).map(|row| batch::position(object, first_row + row as u64 + 1)),
            )) as ArrayRef),
            _ => canonical_column(input, &file_batch, i).map_err(arrow_err),
        };
        let ratings = column(STAR_RATING)?;
        let helpful = column(HELPFUL_VOTES)?;
        let total = column(TOTAL_VOTES)?;
        let ratings = ratings.as_any().downcast_ref::<Int32Array>().expect("cast to Int32");
        let helpful = helpful.as_any().downcast_ref::<Int32Array>().expect("cast to Int32");
        let total = total.as_any().downcast_ref::<Int32Array>().expect("cast to Int32");

        let mut keep = Vec::with_capacity(file_batch.num_rows());
        for row in 0..file_batch.num_rows() {
            let reason = if ratings.is_null(row) {
                Some(Malformed::StarRatingNotNumeric)
            } else if [helpful, total].iter().any(|votes| votes.is_null(row) || votes.value(row) < 0) {
                Some(Malformed::VotesNotNumeric)
            } else if !(1..=5).contains(&ratings.value(row)) {
                Some(Malformed::StarRatingOutOfRange)
            } else {
                None
            };
            if let Some(reason) = reason {
                counts.add_malformed(reason);
                let raw = raw_row(&file_batch, row);
                let line = row_base + row as u64 + 1;
                sink.log.quarantine(&QuarantinedRow { object: &input.url, line, reason, raw: &raw });
                keep.push(false);
                continue;
            }
            let rating = ratings.value(row);
            let passes = sink.filters.iter().all(|f| f.keeps(rating, Some(helpful.value(row)), Some(total.value(row))));
            if !passes {
                counts.add_skipped(1);
            }
            keep.push(passes);
        }
        let valid = keep.iter().filter(|&&k| k).count();
        counts.add_valid(valid as u64);
        row_base += file_batch.num_rows() as u64;

        // Filter before building the batch: star_rating is non-nullable, and malformed rows may hold nulls.
        let keep = BooleanArray::from(keep);
        let columns: Vec<ArrayRef> = sink
            .projection
            .iter()
            .map(|&i| column(i).and_then(|array| filter(&array, &keep).map_err(arrow_err)))
            .collect::<Result<_>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(valid));
        let valid_rows = RecordBatch::try_new_with_options(Arc::clone(&out_schema) as SchemaRef, columns, &options)
            .map_err(arrow_err)?;

        // Progress in proportion to rows, as row groups are fetched in ranges, not read front to back.
        let done = input.size * row_base / total_rows;
        sink.bytes_read.fetch_add(done.saturating_sub(reported), std::sync::atomic::Ordering::Relaxed);
        reported = reported.max(done);
        if valid_rows.num_rows() > 0 && !(sink.emit)(valid_rows) {
            break;
        }
    }
    sink.log.add(&input.url, &counts);
    Ok(())
}

/// A canonical column of a file batch: the file's column of that name cast to the canonical type, else the
/// hive partition value, else nulls.
fn canonical_column(
    input: &Input,
    file_batch: &RecordBatch,
    i: usize,
) -> std::result::Result<ArrayRef, datafusion::arrow::error::ArrowError> {
    let target = batch::schema().field(i).data_type().clone();
    let rows = file_batch.num_rows();
    if let Some(array) = file_batch.column_by_name(COLUMNS[i]) {
        return if array.data_type() == &target { Ok(Arc::clone(array)) } else { cast(array, &target) };
    }
    let partition = input.partition_values.iter().find(|(k, _)| k == COLUMNS[i]);
    Ok(match (partition, &target) {
        (Some((_, value)), DataType::Utf8) => Arc::new(StringArray::from(vec![value.as_str(); rows])),
        (Some((_, value)), _) => cast(&StringArray::from(vec![value.as_str(); rows]), &target)?,
        (None, _) => new_null_array(&target, rows),
    })
}

/// A malformed row as `column=value` pairs, for the quarantine file.
fn raw_row(file_batch: &RecordBatch, row: usize) -> String {
    let schema = file_batch.schema();
    let mut parts = Vec::with_capacity(schema.fields().len());
    for (field, array) in schema.fields().iter().zip(file_batch.columns()) {
        let value =
            if array.is_null(row) { "NULL".to_owned() } else { array_value_to_string(array, row).unwrap_or_default() };
        parts.push(format!("{}={value}", field.name()));
    }
    parts.join("\t")
}
