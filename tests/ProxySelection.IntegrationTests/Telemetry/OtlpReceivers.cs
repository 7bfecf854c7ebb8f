using System.Net;
using ProxySelection.Lab;

namespace ProxySelection.IntegrationTests.Telemetry;

/// <summary>What a test OTLP receiver got: decoded spans, metric export requests, and requests it could not take.</summary>
internal abstract class OtlpReceiver : IAsyncDisposable
{
    private readonly Lock _lock = new();
    private readonly List<OtlpSpan> _spans = [];
    private readonly List<string> _errors = [];
    private int _metricRequests;

    public IReadOnlyList<OtlpSpan> Spans
    {
        get
        {
            lock (_lock)
            {
                return [.. _spans];
            }
        }
    }

    /// <summary>Requests that did not decode or went to an unknown path.</summary>
    public IReadOnlyList<string> Errors
    {
        get
        {
            lock (_lock)
            {
                return [.. _errors];
            }
        }
    }

    public int MetricRequests => Volatile.Read(ref _metricRequests);

    /// <summary>Waits until <paramref name="condition"/> holds for the spans received, or the timeout passes.</summary>
    public async Task<IReadOnlyList<OtlpSpan>> WaitForSpansAsync(Func<IReadOnlyList<OtlpSpan>, bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            var spans = Spans;
            if (condition(spans))
            {
                return spans;
            }

            await Task.Delay(100);
        }

        return Spans;
    }

    /// <summary>Decodes one ExportTraceServiceRequest; a malformed one is recorded as an error and rethrown.</summary>
    protected void AddTraces(byte[] request)
    {
        try
        {
            var spans = OtlpTraceReader.ReadExportTraceServiceRequest(request);
            lock (_lock)
            {
                _spans.AddRange(spans);
            }
        }
        catch (OtlpFormatException e)
        {
            AddError(e.Message);
            throw;
        }
    }

    protected void AddMetrics() => Interlocked.Increment(ref _metricRequests);

    protected void AddError(string error)
    {
        lock (_lock)
        {
            _errors.Add(error);
        }
    }

    public abstract ValueTask DisposeAsync();
}

/// <summary>
/// A test OTLP/HTTP receiver (protobuf): listens inside a lab namespace (the daemon's), decodes every
/// <c>POST /v1/traces</c> with <see cref="OtlpTraceReader"/> and counts <c>POST /v1/metrics</c>. Answers 200 with an
/// empty Export*ServiceResponse, which is an empty protobuf message.
/// </summary>
internal sealed class OtlpHttpReceiver : OtlpReceiver
{
    private readonly HttpListener _listener;
    private readonly Task _loop;

    private OtlpHttpReceiver(HttpListener listener)
    {
        _listener = listener;
        _loop = Task.Run(LoopAsync);
    }

    /// <summary>Binds <c>http://127.0.0.1:PORT/</c> in <paramref name="ns"/>: the listening socket is created by Start.</summary>
    public static async Task<OtlpHttpReceiver> StartAsync(NetNamespace ns, int port)
    {
        var listener = await ns.RunInNamespaceAsync(() =>
        {
            var l = new HttpListener();
            l.Prefixes.Add($"http://127.0.0.1:{port}/");
            l.Start();
            return l;
        }).WaitAsync(TimeSpan.FromSeconds(10));
        return new OtlpHttpReceiver(listener);
    }

    private async Task LoopAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            try
            {
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                var path = context.Request.Url?.AbsolutePath;
                if (context.Request.HttpMethod == "POST" && path == "/v1/traces")
                {
                    AddTraces(body.ToArray());
                }
                else if (context.Request.HttpMethod == "POST" && path == "/v1/metrics")
                {
                    AddMetrics();
                }
                else
                {
                    AddError($"{context.Request.HttpMethod} {path}");
                }

                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.ContentLength64 = 0;
            }
            catch (OtlpFormatException)
            {
                context.Response.StatusCode = 400;
            }
            finally
            {
                context.Response.Close();
            }
        }
    }

    public override async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        await _loop.WaitAsync(TimeSpan.FromSeconds(5));
    }
}
