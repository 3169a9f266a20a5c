// A steady-rate load generator for `streamlstm bench e2e`, run with the broker's own jars:
//   java -cp "libs/*" RateProducer.java BOOTSTRAP TOPIC PAYLOAD_FILE RATE
// PAYLOAD_FILE holds one record per line, "key<TAB>value". The Java client sends ~50k
// records/s on about half a core where kafka-python needs more than one, and on a 2-core
// machine that core belongs to the workers being measured. Run with -XX:TieredStopAtLevel=1
// -XX:+UseSerialGC (loadgen.py): the default JIT and GC threads doubled its CPU.
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class RateProducer {
    public static void main(String[] args) throws Exception {
        List<String> lines = Files.readAllLines(Paths.get(args[2]), StandardCharsets.UTF_8);
        double ratePerS = Double.parseDouble(args[3]);
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("linger.ms", "5");
        props.put("acks", "1");
        props.put("max.block.ms", "30000");
        ByteArraySerializer bytes = new ByteArraySerializer();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props, bytes, bytes)) {
            long startNs = System.nanoTime();
            int sent = 0;
            for (String line : lines) {
                int tab = line.indexOf('\t');
                byte[] key = line.substring(0, tab).getBytes(StandardCharsets.UTF_8);
                byte[] value = line.substring(tab + 1).getBytes(StandardCharsets.UTF_8);
                producer.send(new ProducerRecord<>(args[1], key, value));
                sent++;
                double aheadS = sent / ratePerS - (System.nanoTime() - startNs) / 1e9;
                if (aheadS > 0.002) {
                    Thread.sleep((long) (aheadS * 1000));
                }
            }
            producer.flush();
            System.out.println(sent + " " + (System.nanoTime() - startNs) / 1e9);
        }
    }
}
