// The partition Apache Kafka's Java producer chooses for a key: the reference the Python clients must match
// (SPEC §2). Run with the cached kafka-clients jar: java -cp 'LIBS/*' JavaPartition.java PARTITIONS < keys
// (one key per line, UTF-8); prints one partition per line.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;

public class JavaPartition {
    public static void main(String[] args) throws Exception {
        int partitions = Integer.parseInt(args[0]);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StringBuilder out = new StringBuilder();
        for (String key; (key = in.readLine()) != null; ) {
            out.append(BuiltInPartitioner.partitionForKey(key.getBytes(StandardCharsets.UTF_8), partitions)).append('\n');
        }
        System.out.print(out);
    }
}
