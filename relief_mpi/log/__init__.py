"""The HDF5 round log (schema, writer, reader) and reports built from it."""
