using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Telemetry;

/// <summary>
/// A test OTLP/gRPC receiver: Kestrel speaking HTTP/2 without TLS (h2c, prior knowledge, as OTLP gRPC on http://) on a
/// socket bound inside a lab namespace. It unframes the gRPC message (1-byte compressed flag, 4-byte big-endian length),
/// decodes TraceService/Export with <see cref="OtlpTraceReader"/> and answers an empty message with grpc-status 0.
/// </summary>
internal sealed class OtlpGrpcReceiver : OtlpReceiver
{
    private const string TraceExport = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    private const string MetricsExport = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    private readonly WebApplication _app;
    private readonly Socket _socket;

    private OtlpGrpcReceiver(WebApplication app, Socket socket)
    {
        _app = app;
        _socket = socket;
    }

    public static async Task<OtlpGrpcReceiver> StartAsync(NetNamespace ns, int port)
    {
        // The listening socket is made in the namespace; Kestrel takes it by handle and serves it from anywhere.
        var socket = await ns.RunInNamespaceAsync(() =>
        {
            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.Bind(new IPEndPoint(IPAddress.Loopback, port));
            s.Listen(16);
            return s;
        }).WaitAsync(TimeSpan.FromSeconds(10));
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.ListenHandle((ulong)socket.Handle, listen => listen.Protocols = HttpProtocols.Http2));
        var app = builder.Build();
        var receiver = new OtlpGrpcReceiver(app, socket);
        app.MapPost(TraceExport, context => receiver.ExportAsync(context, traces: true));
        app.MapPost(MetricsExport, context => receiver.ExportAsync(context, traces: false));
        app.MapFallback(context =>
        {
            receiver.AddError($"{context.Request.Method} {context.Request.Path}");
            context.Response.StatusCode = 404;
            return Task.CompletedTask;
        });
        await app.StartAsync().WaitAsync(TimeSpan.FromSeconds(10));
        return receiver;
    }

    private async Task ExportAsync(HttpContext context, bool traces)
    {
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        var bytes = body.ToArray();
        string status = "0";
        if (bytes.Length < 5 || bytes[0] != 0 || BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(1)) != bytes.Length - 5)
        {
            AddError($"gRPC frame: {bytes.Length} bytes, flag {(bytes.Length > 0 ? bytes[0] : -1)}");
            status = "13"; // INTERNAL
        }
        else if (traces)
        {
            try
            {
                AddTraces(bytes[5..]);
            }
            catch (OtlpFormatException)
            {
                status = "13";
            }
        }
        else
        {
            AddMetrics();
        }

        context.Response.ContentType = "application/grpc";
        // An empty Export*ServiceResponse: an uncompressed frame of length 0.
        await context.Response.Body.WriteAsync(new byte[5]);
        context.Response.AppendTrailer("grpc-status", status);
    }

    public override async ValueTask DisposeAsync()
    {
        await _app.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        await _app.DisposeAsync();
        _socket.Dispose();
    }
}
