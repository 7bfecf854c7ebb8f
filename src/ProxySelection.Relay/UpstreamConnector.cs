using System.Net;
using System.Net.Sockets;
using Polly;
using Polly.CircuitBreaker;
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

    /// <summary>The ICMP error that ended a failed connect, when asked for (<see cref="UpstreamConnector.ConnectReportingIcmpAsync"/>).</summary>
    public IcmpError? Icmp { get; init; }
}

/// <summary>Upstream connect settings. Defaults suit a proxy in front of ordinary servers.</summary>
public sealed class UpstreamConnectorOptions
{
    /// <summary>Connect timeout, 10 ms to 1 day. Default 10 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Failure ratio in the sampling window that opens a destination's circuit, in (0, 1]. Default 0.5.</summary>
    public double BreakerFailureRatio { get; set; } = 0.5;

    /// <summary>Connects in the window before the ratio counts, at least 2. Default 5.</summary>
    public int BreakerMinimumThroughput { get; set; } = 5;

    /// <summary>Sampling window, 0.5 s to 1 day. Default 30 s.</summary>
    public TimeSpan BreakerSamplingDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long an open circuit refuses connects without trying, 0.5 s to 1 day. Default 15 s.</summary>
    public TimeSpan BreakerBreakDuration { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Destinations that keep a circuit breaker at once; the least recently used is forgotten beyond this.
    /// Destinations are chosen by clients, so the map must not grow with them. Default 4096.
    /// </summary>
    public int MaxBreakers { get; set; } = 4096;

    /// <summary>Problems with the values (the ranges Polly enforces); empty when valid.</summary>
    public IReadOnlyList<string> Validate()
    {
        var errors = new List<string>();
        if (ConnectTimeout < TimeSpan.FromMilliseconds(10) || ConnectTimeout > TimeSpan.FromDays(1))
        {
            errors.Add("ConnectTimeout must be between 10 ms and 1 day");
        }
        if (!(BreakerFailureRatio > 0 && BreakerFailureRatio <= 1))
        {
            errors.Add("BreakerFailureRatio must be in (0, 1]");
        }
        if (BreakerMinimumThroughput < 2)
        {
            errors.Add("BreakerMinimumThroughput must be at least 2");
        }
        if (BreakerSamplingDuration < TimeSpan.FromMilliseconds(500) || BreakerSamplingDuration > TimeSpan.FromDays(1))
        {
            errors.Add("BreakerSamplingDuration must be between 0.5 s and 1 day");
        }
        if (BreakerBreakDuration < TimeSpan.FromMilliseconds(500) || BreakerBreakDuration > TimeSpan.FromDays(1))
        {
            errors.Add("BreakerBreakDuration must be between 0.5 s and 1 day");
        }
        if (MaxBreakers <= 0)
        {
            errors.Add("MaxBreakers must be positive");
        }
        return errors;
    }
}

/// <summary>
/// Connects the upstream leg through a Polly pipeline per destination: a circuit breaker (outer) around a connect
/// timeout (inner), so timeouts count as failures. At most <see cref="UpstreamConnectorOptions.MaxBreakers"/>
/// destinations keep a pipeline (least recently used forgotten first). Failures are returned as values, never thrown.
/// </summary>
public sealed class UpstreamConnector : IAsyncDisposable
{
    private readonly SocketFactory _sockets;
    private readonly UpstreamConnectorOptions _options;
    private readonly TimeProvider _time;
    private readonly Lock _lock = new();
    private readonly Dictionary<IPEndPoint, LinkedListNode<(IPEndPoint Destination, ResiliencePipeline Pipeline)>> _breakers = [];
    private readonly LinkedList<(IPEndPoint Destination, ResiliencePipeline Pipeline)> _recency = new();

    /// <exception cref="ArgumentException">the options are invalid (see <see cref="UpstreamConnectorOptions.Validate"/>).</exception>
    public UpstreamConnector(UpstreamConnectorOptions options, SocketFactory sockets, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(sockets);
        ArgumentNullException.ThrowIfNull(time);
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("invalid UpstreamConnectorOptions: " + string.Join("; ", errors), nameof(options));
        }
        _options = options;
        _sockets = sockets;
        _time = time;
    }

    /// <summary>Destinations that hold a circuit breaker now (at most <see cref="UpstreamConnectorOptions.MaxBreakers"/>).</summary>
    public int BreakerCount
    {
        get
        {
            lock (_lock)
            {
                return _breakers.Count;
            }
        }
    }

    /// <summary>
    /// The destination's pipeline, created on first use. Forgetting a destination forgets its failures: a flood of
    /// new destinations can at worst buy a failing server a fresh circuit, each try bounded by the connect timeout.
    /// </summary>
    private ResiliencePipeline PipelineFor(IPEndPoint destination)
    {
        lock (_lock)
        {
            if (_breakers.TryGetValue(destination, out var node))
            {
                _recency.Remove(node);
                _recency.AddFirst(node);
                return node.Value.Pipeline;
            }
            if (_breakers.Count >= _options.MaxBreakers)
            {
                var oldest = _recency.Last!;
                _recency.RemoveLast();
                _breakers.Remove(oldest.Value.Destination);
            }
            // Copied: the key must not change under the map if the caller reuses its IPEndPoint.
            var key = new IPEndPoint(destination.Address, destination.Port);
            var pipeline = BuildPipeline();
            _breakers[key] = _recency.AddFirst((key, pipeline));
            return pipeline;
        }
    }

    // Nothing in these strategies holds a timer (the breaker reads the clock when called), so an evicted pipeline
    // needs no disposal.
    private ResiliencePipeline BuildPipeline() => new ResiliencePipelineBuilder { TimeProvider = _time }
        .AddCircuitBreaker(new CircuitBreakerStrategyOptions
        {
            FailureRatio = _options.BreakerFailureRatio,
            MinimumThroughput = _options.BreakerMinimumThroughput,
            SamplingDuration = _options.BreakerSamplingDuration,
            BreakDuration = _options.BreakerBreakDuration,
            // A local failure (no descriptor, no permission for a transparent bind) says nothing about the server.
            ShouldHandle = static args => ValueTask.FromResult(args.Outcome.Exception is SocketException or TimeoutRejectedException),
        })
        .AddTimeout(_options.ConnectTimeout)
        .Build();

    /// <summary>
    /// Opens a <paramref name="protocol"/> connection to <paramref name="destination"/>. With
    /// <paramref name="transparentSource"/>, binds to that (foreign) address first with IP_TRANSPARENT.
    /// </summary>
    public ValueTask<UpstreamConnectResult> ConnectAsync(
        IPEndPoint destination,
        TransportProtocol protocol,
        IPAddress? transparentSource = null,
        CancellationToken cancellationToken = default) =>
        ConnectCoreAsync(destination, protocol, transparentSource, icmp: null, cancellationToken);

    /// <summary>
    /// As <see cref="ConnectAsync(IPEndPoint, TransportProtocol, IPAddress?, CancellationToken)"/>; a failed connect also
    /// reports the ICMP error that ended it (<see cref="UpstreamConnectResult.Icmp"/>, IP_RECVERR during the connect only).
    /// </summary>
    public async ValueTask<UpstreamConnectResult> ConnectReportingIcmpAsync(IPEndPoint destination, TransportProtocol protocol, CancellationToken cancellationToken = default)
    {
        var icmp = new IcmpSlot();
        var result = await ConnectCoreAsync(destination, protocol, null, icmp, cancellationToken).ConfigureAwait(false);
        return result.Connected ? result : result with { Icmp = icmp.Error };
    }

    private async ValueTask<UpstreamConnectResult> ConnectCoreAsync(
        IPEndPoint destination,
        TransportProtocol protocol,
        IPAddress? transparentSource,
        IcmpSlot? icmp,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        try
        {
            // ExecuteOutcomeAsync wants a callback that never throws: every failure becomes an outcome.
            var outcome = await PipelineFor(destination).ExecuteOutcomeAsync(
                static async (ctx, state) =>
                {
                    Socket socket;
                    try
                    {
                        socket = state.Self.Open(state.Destination, state.Protocol, state.Source);
                    }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException)
                    {
                        return Outcome.FromException<Socket>(new LocalSocketException(e));
                    }
                    bool icmp = state.Icmp is not null && IcmpErrorQueue.TryEnable(socket);
                    try
                    {
                        await socket.ConnectAsync(state.Destination, ctx.CancellationToken).ConfigureAwait(false);
                        if (icmp)
                        {
                            IcmpErrorQueue.Disable(socket);
                        }

                        return Outcome.FromResult(socket);
                    }
                    catch (Exception e)
                    {
                        if (icmp)
                        {
                            // Read before the close: the queue goes with the socket.
                            state.Icmp!.Error = IcmpErrorQueue.TryRead(socket);
                        }

                        socket.Dispose();
                        return Outcome.FromException<Socket>(e);
                    }
                },
                context,
                (Self: this, Destination: destination, Protocol: protocol, Source: transparentSource, Icmp: icmp)).ConfigureAwait(false);
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
        LocalSocketException { InnerException: SocketException e } => new(UpstreamConnectStatus.Failed, null, e.SocketErrorCode),
        SocketException { SocketErrorCode: SocketError.ConnectionRefused } => new(UpstreamConnectStatus.Refused, null, SocketError.ConnectionRefused),
        SocketException { SocketErrorCode: SocketError.TimedOut } => new(UpstreamConnectStatus.TimedOut, null, SocketError.TimedOut),
        SocketException { SocketErrorCode: SocketError.HostUnreachable or SocketError.NetworkUnreachable or SocketError.HostDown or SocketError.NetworkDown } e
            => new(UpstreamConnectStatus.Unreachable, null, e.SocketErrorCode),
        SocketException e => new(UpstreamConnectStatus.Failed, null, e.SocketErrorCode),
        _ => new(UpstreamConnectStatus.Failed, null, SocketError.SocketError),
    };

    public ValueTask DisposeAsync()
    {
        lock (_lock)
        {
            _breakers.Clear();
            _recency.Clear();
        }
        return ValueTask.CompletedTask;
    }

    /// <summary>Where the connect callback leaves the ICMP error it read (the callback's state is a value).</summary>
    private sealed class IcmpSlot
    {
        public IcmpError? Error { get; set; }
    }

    /// <summary>Creating or preparing the socket failed here, before any packet left: not the destination's fault.</summary>
    private sealed class LocalSocketException(Exception inner) : Exception(inner.Message, inner);
}
