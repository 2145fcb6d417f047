// ParityHost.java: the parity host of the Spring Boot mode (tests/parity/HOSTS.md):
// the options from the JSON file named by SWITCHBOARD_PARITY_CONFIG, the handler
// at the config's path, /metrics from the hub, port 0 on 127.0.0.1; on SIGTERM
// the app closes (the hub drains first) and the process exits 0.
package dev.switchboard.parity;

import dev.switchboard.spring.SwitchboardWebSocketHandler;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.switchboard.SwitchboardServer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.SpringBootConfiguration;
import org.springframework.boot.autoconfigure.EnableAutoConfiguration;
import org.springframework.boot.web.context.WebServerApplicationContext;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.context.annotation.Bean;
import org.springframework.http.MediaType;
import org.springframework.http.ResponseEntity;
import org.springframework.web.bind.annotation.GetMapping;
import org.springframework.web.bind.annotation.RestController;
import org.springframework.web.socket.config.annotation.EnableWebSocket;
import org.springframework.web.socket.config.annotation.WebSocketConfigurer;
import org.springframework.web.socket.config.annotation.WebSocketHandlerRegistry;
import org.springframework.web.socket.server.standard.ServletServerContainerFactoryBean;

@SpringBootConfiguration
@EnableAutoConfiguration
@EnableWebSocket
@RestController
public class ParityHost implements WebSocketConfigurer {
    static JsonNode config;
    private final SwitchboardWebSocketHandler handler;

    public ParityHost(SwitchboardWebSocketHandler handler) {
        this.handler = handler;
    }

    private static List<String> strings(JsonNode list) {
        List<String> out = new ArrayList<>();
        list.forEach(n -> out.add(n.asText()));
        return out;
    }

    @Bean
    static SwitchboardWebSocketHandler parityHandler() {
        SwitchboardServer.Builder b = SwitchboardServer.builder();
        for (Map.Entry<String, JsonNode> e : config.properties()) {
            JsonNode v = e.getValue();
            switch (e.getKey()) {
                // The kit matches the templates; Spring routes every entry here (below).
                case "path" -> b.path(v.asText());
                case "app_types" -> b.appTypes(strings(v).toArray(String[]::new));
                case "max_message_bytes" -> b.maxMessageBytes(v.asLong());
                case "max_conns" -> b.maxConns(v.asLong());
                case "max_conns_per_ip" -> b.maxConnsPerIp(v.asLong());
                case "max_pending_per_ip" -> b.maxPendingPerIp(v.asLong());
                case "max_pending" -> b.maxPending(v.asLong());
                case "conn_rate_per_ip" -> b.connRatePerIp(v.asLong());
                case "conn_burst_per_ip" -> b.connBurstPerIp(v.asLong());
                case "ipv6_prefix" -> b.ipv6Prefix(v.asInt());
                case "max_room_size" -> b.maxRoomSize(v.asLong());
                case "max_rooms_per_session" -> b.maxRoomsPerSession(v.asLong());
                case "max_metadata_bytes" -> b.maxMetadataBytes(v.asLong());
                case "max_away_per_ip" -> b.maxAwayPerIp(v.asLong());
                case "max_away_per_user" -> b.maxAwayPerUser(v.asLong());
                case "max_away_sessions" -> b.maxAwaySessions(v.asLong());
                case "away_replay_budget_bytes" -> b.awayReplayBudgetBytes(v.asLong());
                case "outbound_budget_bytes" -> b.outboundBudgetBytes(v.asLong());
                case "rate_limit_burst" -> b.rateLimitBurst(v.asInt());
                case "rate_limit_rps" -> b.rateLimitRps(v.asInt());
                case "heartbeat_interval_ms" -> b.heartbeat(Duration.ofMillis(v.asLong()));
                case "heartbeat_timeout_ms" -> b.heartbeatTimeout(Duration.ofMillis(v.asLong()));
                case "resume_window_ms" -> b.resumeWindow(Duration.ofMillis(v.asLong()));
                case "drain_timeout_ms" -> b.drainTimeout(Duration.ofMillis(v.asLong()));
                case "http_write_timeout_ms" -> b.httpWriteTimeout(Duration.ofMillis(v.asLong()));
                case "allowed_origins" -> b.allowedOrigins(strings(v).toArray(String[]::new));
                case "trusted_proxies" -> b.trustedProxies(strings(v).toArray(String[]::new));
                case "redis_url" -> b.redisUrl(v.asText());
                case "redis_ca_cert" -> b.redisCaCert(Path.of(v.asText()));
                case "auth_tokens" -> v.properties().forEach(t -> b.authToken(t.getKey(), t.getValue().asText()));
                default -> throw new IllegalArgumentException("unknown config key " + e.getKey());
            }
        }
        return new SwitchboardWebSocketHandler(b.create());
    }

    @Override
    public void registerWebSocketHandlers(WebSocketHandlerRegistry registry) {
        // Spring's patterns read `{roomId}`/`{userId}` segments as captures too.
        String[] paths = paths();
        registry.addHandler(handler, paths).addInterceptors(handler).setAllowedOrigins("*");
    }

    private static String[] paths() {
        return java.util.Arrays.stream(config.path("path").asText("/ws").split(","))
                .map(String::trim).toArray(String[]::new);
    }

    @Bean
    static ServletServerContainerFactoryBean parityContainer() {
        ServletServerContainerFactoryBean container = new ServletServerContainerFactoryBean();
        container.setMaxTextMessageBufferSize(1 << 20);
        container.setMaxBinaryMessageBufferSize(1 << 20);
        return container;
    }

    @GetMapping("/metrics")
    ResponseEntity<String> metrics() {
        return ResponseEntity.ok()
                .contentType(MediaType.parseMediaType("application/openmetrics-text; version=1.0.0; charset=utf-8"))
                .body(handler.hub().metrics());
    }

    public static void main(String[] args) throws Exception {
        config = new ObjectMapper().readTree(Files.readString(Path.of(System.getenv("SWITCHBOARD_PARITY_CONFIG"))));
        SpringApplication app = new SpringApplication(ParityHost.class);
        app.setRegisterShutdownHook(false); // ours, below
        app.setDefaultProperties(Map.of("server.port", "0", "server.address", "0.0.0.0",
                "spring.main.banner-mode", "off", "logging.level.root", "WARN"));
        ConfigurableApplicationContext ctx = app.run(args);
        int port = ((WebServerApplicationContext) ctx).getWebServer().getPort();
        // SIGTERM: close the app (the hub drains before Tomcat stops), then end
        // with status 0 (the JVM's own exit status for a signal would be 143).
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            ctx.close();
            Runtime.getRuntime().halt(0);
        }));
        String first = java.util.Arrays.stream(paths()).filter(p -> !p.contains("{")).findFirst().orElse("/");
        System.out.println("listening on ws://127.0.0.1:" + port + first);
        System.out.flush();
    }
}
