# A Dockerfile with known faults: hack/image checks that dockerfile-lint refuses it, for each.
FROM debian:bookworm as Builder
ENV API_PASSWORD=hunter2
ENV DATA=$UNDEFINED_DIR/data
RUN echo building
FROM scratch
COPY --from=Builder /etc/hostname /
CMD /ispcert controller
