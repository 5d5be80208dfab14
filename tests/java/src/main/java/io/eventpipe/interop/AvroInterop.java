package io.eventpipe.interop;

import java.io.File;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * eventpipe's topics from Java, with Apache Avro's own single-object encoding (BinaryMessageEncoder/Decoder).
 *
 * produce BOOTSTRAP SCHEMA_DIR PREFIX ACCOUNT SESSION COMPONENT TYPE START_MS
 *     a START and an END event (session SESSION, type APPSTART) and two join records that join, keyed as the
 *     gateway keys them; prints the event ids.
 * decode BOOTSTRAP SCHEMA_DIR TOPIC...
 *     reads every record of the topics and decodes it with the schema of its topic (older versions registered);
 *     prints "decoded TOPIC PARTITION OFFSET JSON" per record, or "failed ..." and exits 1.
 */
public final class AvroInterop {

    public static void main(String[] args) throws Exception {
        if (args[0].equals("produce")) {
            produce(args);
        } else {
            decode(args);
        }
    }

    static Schema schema(String dir, String file) throws Exception {
        return new Schema.Parser().parse(new File(dir, file));
    }

    static String key(String... parts) {
        StringBuilder out = new StringBuilder("[");
        for (int i = 0; i < parts.length; i++) {
            out.append(i == 0 ? "\"" : ",\"").append(parts[i]).append('"'); // plain ids: nothing to escape
        }
        return out.append(']').toString();
    }

    static void produce(String[] a) throws Exception {
        String bootstrap = a[1], dir = a[2], prefix = a[3], account = a[4], session = a[5], component = a[6],
                type = a[7];
        long start = Long.parseLong(a[8]);
        Schema eventSchema = schema(dir, "event.avsc");
        Schema joinSchema = schema(dir, "join_record.avsc");
        BinaryMessageEncoder<GenericRecord> events = new BinaryMessageEncoder<>(GenericData.get(), eventSchema);
        BinaryMessageEncoder<GenericRecord> joins = new BinaryMessageEncoder<>(GenericData.get(), joinSchema);
        long now = System.currentTimeMillis();

        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("acks", "all");
        try (KafkaProducer<byte[], byte[]> producer =
                     new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
            Schema entitySchema = eventSchema.getField("entities").schema().getElementType();
            String[] actions = {"START", "END"};
            for (int i = 0; i < actions.length; i++) {
                GenericRecord entity = new GenericData.Record(entitySchema);
                entity.put("key", "app");
                entity.put("value", "\"BigBrother\"");
                GenericRecord event = new GenericData.Record(eventSchema);
                event.put("account_id", account);
                event.put("event_id", "java-" + session + "-" + i);
                event.put("action", new GenericData.EnumSymbol(eventSchema.getField("action").schema(), actions[i]));
                event.put("type", "APPSTART");
                event.put("timestamp", start / 1000 + 100L * i);
                event.put("session", session);
                event.put("entities", new GenericData.Array<>(eventSchema.getField("entities").schema(), List.of(entity)));
                event.put("received_at", now);
                event.put("source", new GenericData.EnumSymbol(eventSchema.getField("source").schema(), "kafka"));
                ByteBuffer value = events.encode(event);
                producer.send(new ProducerRecord<>(prefix + ".events", key(account, session, "APPSTART")
                        .getBytes(StandardCharsets.UTF_8), bytes(value))).get();
                System.out.println("event=" + event.get("event_id"));
            }
            for (int i = 0; i < 2; i++) {
                GenericRecord join = new GenericData.Record(joinSchema);
                join.put("account_id", account);
                join.put("record_id", "java-" + component + "-" + i);
                join.put("event_id", null);
                join.put("component_id", component);
                join.put("type_id", type);
                join.put("join_key", 42L);
                join.put("start_date", start + 60_000L * i);
                join.put("join_interval", 600.0);
                join.put("importance", new GenericData.EnumSymbol(joinSchema.getField("importance").schema(), "Alarm"));
                join.put("count", 1L);
                join.put("message", "java join " + i);
                join.put("version", "1.0.0.0");
                join.put("category", null);
                join.put("type_system_name", null);
                join.put("type_display_name", null);
                join.put("type_code", null);
                join.put("properties", new GenericData.Array<>(joinSchema.getField("properties").schema(), List.of()));
                join.put("received_at", now);
                join.put("source", new GenericData.EnumSymbol(joinSchema.getField("source").schema(), "kafka"));
                producer.send(new ProducerRecord<>(prefix + ".joins", key(account, component, type)
                        .getBytes(StandardCharsets.UTF_8), bytes(joins.encode(join)))).get();
            }
            System.out.println("joins=2");
        }
    }

    static byte[] bytes(ByteBuffer buffer) {
        byte[] out = new byte[buffer.remaining()];
        buffer.get(out);
        return out;
    }

    static BinaryMessageDecoder<GenericRecord> decoderFor(String dir, String topic) throws Exception {
        String name = topic.substring(topic.lastIndexOf('.') + 1);
        String base = Map.of("events", "event", "joins", "join_record", "deadletter", "dead_letter",
                "components", "component").get(name);
        BinaryMessageDecoder<GenericRecord> decoder =
                new BinaryMessageDecoder<>(GenericData.get(), schema(dir, base + ".avsc"));
        File[] older = new File(dir).listFiles((d, f) -> f.startsWith(base + ".v") && f.endsWith(".avsc"));
        for (File old : older == null ? new File[0] : older) {
            decoder.addSchema(new Schema.Parser().parse(old)); // records written with an older schema resolve too
        }
        return decoder;
    }

    static void decode(String[] a) throws Exception {
        String bootstrap = a[1], dir = a[2];
        Properties props = new Properties();
        props.put("bootstrap.servers", bootstrap);
        props.put("enable.auto.commit", "false");
        int failures = 0;
        try (KafkaConsumer<byte[], byte[]> consumer =
                     new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            for (String topic : Arrays.copyOfRange(a, 3, a.length)) {
                BinaryMessageDecoder<GenericRecord> decoder = decoderFor(dir, topic);
                List<TopicPartition> parts = new ArrayList<>();
                consumer.partitionsFor(topic).forEach(p -> parts.add(new TopicPartition(topic, p.partition())));
                consumer.assign(parts);
                consumer.seekToBeginning(parts);
                Map<TopicPartition, Long> end = consumer.endOffsets(parts);
                long deadline = System.currentTimeMillis() + 30_000;
                while (parts.stream().anyMatch(p -> consumer.position(p) < end.get(p))) {
                    if (System.currentTimeMillis() > deadline) {
                        throw new IllegalStateException("timed out reading " + topic);
                    }
                    for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                        try {
                            GenericRecord record = decoder.decode(r.value());
                            System.out.println("decoded " + topic + " " + r.partition() + " " + r.offset() + " " + record);
                        } catch (Exception e) {
                            failures++;
                            System.out.println("failed " + topic + " " + r.partition() + " " + r.offset() + " " + e);
                        }
                    }
                }
            }
        }
        System.exit(failures == 0 ? 0 : 1);
    }
}
