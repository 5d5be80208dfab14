"""What every eventpipe process shares: settings, the Avro codec, the HTTP contract."""

import os

# clickhouse-driver fills a table of every date from 1900 to 2299 when it is imported — 27 MB in each process that
# speaks to ClickHouse (a worker's budget is 300 MB, issue 16) — unless this variable asks it to fill the table as
# dates are met. eventpipe's tables have no Date column, so the table stays empty. Set here because every eventpipe
# process imports this package before clickhouse-driver; a user's own value wins.
os.environ.setdefault("CLICKHOUSE_DRIVER_LASY_DATE_LUT", "1")
