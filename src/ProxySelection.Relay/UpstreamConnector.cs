using System.Net;
using System.Net.Sockets;
using Polly;
using Polly.CircuitBreaker;
using Polly.Registry;
using Polly.Timeout;

namespace ProxySelection.Relay;

/// <summary>How an upstream connect ended.</summary>
public enum UpstreamConnectStatus
{
    /// <summary>No connect was tried (e.g. refused at the limit before it).</summary>
    NotAttempted = 0,
    Connected,

    /// <summary>The server answered the SYN with a reset (port closed).</summary>
    Refused,

    /// <summary>No answer within the connect timeout.</summary>
    TimedOut,

    /// <summary>ICMP unreachable or no route.</summary>
    Unreachable,

    /// <summary>The destination's circuit is open after repeated failures: no SYN was sent.</summary>
    CircuitOpen,

    /// <summary>The caller cancelled.</summary>
    Cancelled,

    /// <summary>Anything else (see the error).</summary>
    Failed,
}

/// <summary>The result of <see cref="UpstreamConnector.ConnectAsync"/>. On success the caller owns the socket.</summary>
public readonly record struct UpstreamConnectResult(UpstreamConnectStatus Status, Socket? Socket, SocketError Error)
{
    public bool Connected => Status == UpstreamConnectStatus.Connected;
}

/// <summary>Upstream connect settings. Defaults suit a proxy in front of ordinary servers.</summary>
public sealed class UpstreamConnectorOptions
{
    /// <summary>Connect timeout. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Failure ratio in the sampling window that opens a destination's circuit. Default 0.5.</summary>
    public double BreakerFailureRatio { get; set; } = 0.5;

    /// <summary>Connects in the window before the ratio counts. Default 5.</summary>
    public int BreakerMinimumThroughput { get; set; } = 5;

    /// <summary>Sampling window. Default 30 s.</summary>
    public TimeSpan BreakerSamplingDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an open circuit refuses connects without trying. Default 15 s.</summary>
    public TimeSpan BreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(15);
}

/// <summary>
/// Connects the upstream leg through a Polly pipeline per destination: a circuit breaker (outer) around a connect
/// timeout (inner), so timeouts count as failures. Failures are returned as values, never thrown.
/// </summary>
public sealed class UpstreamConnector : IAsyncDisposable
{
    private readonly SocketFactory _sockets;
    private readonly UpstreamConnectorOptions _options;
    private readonly ResiliencePipelineRegistry<IPEndPoint> _pipelines;
    private readonly TimeProvider _time;

    public UpstreamConnector(UpstreamConnectorOptions options, SocketFactory sockets, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(sockets);
        ArgumentNullException.ThrowIfNull(time);
        _options = options;
        _sockets = sockets;
        _time = time;
        _pipelines = new ResiliencePipelineRegistry<IPEndPoint>();
    }

    private ResiliencePipeline PipelineFor(IPEndPoint destination) =>
        _pipelines.GetOrAddPipeline(destination, builder =>
        {
            builder.TimeProvider = _time;
            builder
                .AddCircuitBreaker(new CircuitBreakerStrategyOptions
                {
                    FailureRatio = _options.BreakerFailureRatio,
                    MinimumThroughput = _options.BreakerMinimumThroughput,
                    SamplingDuration = _options.BreakerSamplingDuration,
                    BreakDuration = _options.BreakerBreakDuration,
                    ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is SocketException or TimeoutRejectedException),
                })
                .AddTimeout(_options.ConnectTimeout);
        });

    /// <summary>
    /// Opens a <paramref name="protocol"/> connection to <paramref name="destination"/>. With
    /// <paramref name="transparentSource"/>, binds to that (foreign) address first with IP_TRANSPARENT.
    /// </summary>
    public async ValueTask<UpstreamConnectResult> ConnectAsync(
        IPEndPoint destination,
        TransportProtocol protocol,
        IPAddress? transparentSource = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        try
        {
            var outcome = await PipelineFor(destination).ExecuteOutcomeAsync(
                static async (ctx, state) =>
                {
                    var socket = state.Self.Open(state.Destination, state.Protocol, state.Source);
                    try
                    {
                        await socket.ConnectAsync(state.Destination, ctx.CancellationToken).ConfigureAwait(false);
                        return Outcome.FromResult(socket);
                    }
                    catch (Exception e)
                    {
                        socket.Dispose();
                        return Outcome.FromException<Socket>(e);
                    }
                },
                context,
                (Self: this, Destination: destination, Protocol: protocol, Source: transparentSource)).ConfigureAwait(false);
            return outcome.Exception is null
                ? new UpstreamConnectResult(UpstreamConnectStatus.Connected, outcome.Result, SocketError.Success)
                : Classify(outcome.Exception, cancellationToken);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }

    private Socket Open(IPEndPoint destination, TransportProtocol protocol, IPAddress? source)
    {
        var socket = _sockets.Create(destination.AddressFamily, protocol);
        try
        {
            socket.NoDelay = true;
            if (source is not null)
            {
                TransparentListener.SetTransparent(socket);
                TrySetBindAddressNoPort(socket);
                socket.Bind(new IPEndPoint(source, 0));
            }
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// IP_BIND_ADDRESS_NO_PORT: pick the source port at connect time, against the 4-tuple, not at bind time
    /// against the address alone (many clients share one source address). Best effort: older MPTCP lacks it.
    /// </summary>
    private static void TrySetBindAddressNoPort(Socket socket)
    {
        try
        {
            socket.SetRawSocketOption(Native.SolIp, Native.IpBindAddressNoPort, [1, 0, 0, 0]);
        }
        catch (SocketException)
        {
        }
    }

    private static UpstreamConnectResult Classify(Exception exception, CancellationToken cancellationToken) => exception switch
    {
        BrokenCircuitException => new(UpstreamConnectStatus.CircuitOpen, null, SocketError.Success),
        TimeoutRejectedException => new(UpstreamConnectStatus.TimedOut, null, SocketError.TimedOut),
        OperationCanceledException when cancellationToken.IsCancellationRequested => new(UpstreamConnectStatus.Cancelled, null, SocketError.OperationAborted),
        SocketException { SocketErrorCode: SocketError.ConnectionRefused } => new(UpstreamConnectStatus.Refused, null, SocketError.ConnectionRefused),
        SocketException { SocketErrorCode: SocketError.TimedOut } => new(UpstreamConnectStatus.TimedOut, null, SocketError.TimedOut),
        SocketException { SocketErrorCode: SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.HostDown or SocketError.NetworkDown } e
            => new(UpstreamConnectStatus.Unreachable, null, e.SocketErrorCode),
        SocketException e => new(UpstreamConnectStatus.Failed, null, e.SocketErrorCode),
        _ => new(UpstreamConnectStatus.Failed, null, SocketError.SocketError),
    };

    public ValueTask DisposeAsync() => _pipelines.DisposeAsync();
}
