// Prints how many partitions of the cluster at the bootstrap address given have fewer
// in-sync replicas than replicas (internal topics included); exits non-zero only when
// it cannot tell. scripts/kafka-local.sh runs it from source (`java UnderReplicated.java`) between
// the nodes of a rolling restart.

import java.util.Map;
import java.util.Properties;
import java.util.Set;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ListTopicsOptions;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.TopicPartitionInfo;

public class UnderReplicated {
    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: UnderReplicated BOOTSTRAP_SERVERS");
            System.exit(2);
        }
        Properties config = new Properties();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
        try (Admin admin = Admin.create(config)) {
            Set<String> names = admin.listTopics(new ListTopicsOptions().listInternal(true)).names().get();
            Map<String, TopicDescription> topics = admin.describeTopics(names).allTopicNames().get();
            int under = 0;
            for (TopicDescription topic : topics.values()) {
                for (TopicPartitionInfo partition : topic.partitions()) {
                    if (partition.isr().size() < partition.replicas().size()) {
                        under++;
                    }
                }
            }
            System.out.println(under);
        }
    }
}
