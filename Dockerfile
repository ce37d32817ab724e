# Build: a static binary, no cgo, paths trimmed.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY *.go schema.sql openapi.json ./
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /tasks .

# Run: nothing but the binary and the CA bundle (for sslmode=verify-full, e.g. Neon).
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /tasks /tasks
USER 65534:65534
EXPOSE 8000
ENTRYPOINT ["/tasks"]
