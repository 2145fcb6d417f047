// SignalingApp.java: a Spring Boot app that serves Switchboard on its own port
// with the WebSocketHandler, as a user's app would (the README's snippet is this
// configuration). The tests start it with @SpringBootTest.
package dev.switchboard.spring;

import dev.switchboard.SwitchboardServer;
import java.time.Duration;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.context.annotation.Bean;
import org.springframework.web.socket.config.annotation.EnableWebSocket;
import org.springframework.web.socket.config.annotation.WebSocketConfigurer;
import org.springframework.web.socket.config.annotation.WebSocketHandlerRegistry;
import org.springframework.web.socket.server.standard.ServletServerContainerFactoryBean;

@SpringBootApplication
@EnableWebSocket
public class SignalingApp implements WebSocketConfigurer {
    private final SwitchboardWebSocketHandler handler;

    public SignalingApp(SwitchboardWebSocketHandler handler) {
        this.handler = handler;
    }

    @Bean
    static SwitchboardWebSocketHandler switchboardHandler() {
        SwitchboardServer hub = SwitchboardServer.builder()
                .allowedOrigins("https://app.example")
                .trustedProxies("127.0.0.1")
                .maxConnsPerIp(2)
                .rateLimitRps(0)
                .maxMessageBytes(4096)
                .resumeWindow(Duration.ofSeconds(10))
                .drainTimeout(Duration.ofSeconds(3))
                .create();
        return new SwitchboardWebSocketHandler(hub);
    }

    @Override
    public void registerWebSocketHandlers(WebSocketHandlerRegistry registry) {
        registry.addHandler(handler, "/signaling").addInterceptors(handler).setAllowedOrigins("*");
    }

    /** Frames up to the hub's limit and beyond reach the core, which applies it (1009). */
    @Bean
    static ServletServerContainerFactoryBean webSocketContainer() {
        ServletServerContainerFactoryBean container = new ServletServerContainerFactoryBean();
        container.setMaxTextMessageBufferSize(64 * 1024);
        container.setMaxBinaryMessageBufferSize(64 * 1024);
        return container;
    }
}
