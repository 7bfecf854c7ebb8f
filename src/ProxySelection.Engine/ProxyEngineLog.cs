using System.Net;
using Microsoft.Extensions.Logging;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine;

/// <summary>
/// The engine's log lines. Their text is an interface: the demo (<c>Lab/ProxyTrace.cs</c>) and the integration tests
/// parse <c>syn ...</c>, <c>relay ...</c> and the others, so a template changes only with its readers. Event ids 100..199.
/// </summary>
internal static partial class ProxyEngineLog
{
    [LoggerMessage(100, LogLevel.Information, "syn {Client} -> {Destination} {Kind}: {Verdict} ({Reason})")]
    public static partial void Syn(ILogger logger, IPEndPoint client, IPEndPoint destination, SynKind kind, string verdict, string reason);

    [LoggerMessage(101, LogLevel.Information, "syn {Client} -> {Destination} {Kind} token={Token:x8}: {Verdict} ({Reason})")]
    public static partial void JoinSyn(ILogger logger, IPEndPoint client, IPEndPoint destination, SynKind kind, uint token, string verdict, string reason);

    [LoggerMessage(102, LogLevel.Information, "syn {Client} -> {Destination} {Kind}: Intercept (retransmission)")]
    public static partial void Retransmission(ILogger logger, IPEndPoint client, IPEndPoint destination, SynKind kind);

    [LoggerMessage(103, LogLevel.Information, "join {Client} -> {Destination} token={Token:x8}: Pass (JoinTokenForeign, waited)")]
    public static partial void ParkedJoinPassed(ILogger logger, IPEndPoint client, IPEndPoint destination, uint token);

    [LoggerMessage(104, LogLevel.Information, "join {Client} -> {Destination} token={Token:x8}: InterceptJoin (JoinTokenOwned, waited)")]
    public static partial void ParkedJoinIntercepted(ILogger logger, IPEndPoint client, IPEndPoint destination, uint token);

    [LoggerMessage(105, LogLevel.Information, "answered probe {Client} -> {Destination} with {Kind}")]
    public static partial void ProbeAnswerSent(ILogger logger, IPEndPoint client, IPEndPoint destination, string kind);

    [LoggerMessage(106, LogLevel.Warning, "probe {ProbeId} to {Destination}: socket failed: {Error}")]
    public static partial void ProbeSocketFailed(ILogger logger, long probeId, IPEndPoint destination, System.Net.Sockets.SocketError error);

    [LoggerMessage(107, LogLevel.Information, "probe {ProbeId} to {Destination}: answered, mp_capable={MpCapable}{Signal}")]
    public static partial void ProbeAnswered(ILogger logger, long probeId, IPEndPoint destination, bool mpCapable, string signal);

    [LoggerMessage(108, LogLevel.Information, "hold {Client} -> {Destination}: {Outcome} ({Reason}) after {HoldMilliseconds:F1} ms")]
    public static partial void HoldResolved(ILogger logger, IPEndPoint client, IPEndPoint destination, HoldOutcome outcome, DecisionReason reason, double holdMilliseconds);

    [LoggerMessage(109, LogLevel.Warning, "verdict failed, SYN accepted untouched: {ExceptionType}: {Message}")]
    public static partial void VerdictFailed(ILogger logger, string exceptionType, string message);

    [LoggerMessage(110, LogLevel.Warning, "hook: {Message}")]
    public static partial void HookError(ILogger logger, string message);

    [LoggerMessage(111, LogLevel.Warning, "hook failed, packet accepted untouched: {ExceptionType}: {Message}")]
    public static partial void HookFailed(ILogger logger, string exceptionType, string message);

    [LoggerMessage(112, LogLevel.Information, "intercepted connection never arrived {Client} -> {Destination}")]
    public static partial void NeverArrived(ILogger logger, IPEndPoint client, IPEndPoint destination);

    [LoggerMessage(113, LogLevel.Information, "accepted {Client} -> {Local} token={Token:x8}")]
    public static partial void Accepted(ILogger logger, EndPoint? client, EndPoint? local, uint token);

    [LoggerMessage(114, LogLevel.Information,
        "relay {Client} -> {Destination}: {Reason} up={Up} down={Down} subflows={Subflows} client={ClientMptcp} upstream={UpstreamMptcp} connect={Connect} in {DurationMilliseconds:F0} ms")]
    public static partial void Relayed(ILogger logger, IPEndPoint? client, IPEndPoint? destination, Relay.CloseReason reason, long up, long down, int subflows,
        Relay.MptcpStatus clientMptcp, Relay.MptcpStatus upstreamMptcp, Relay.UpstreamConnectStatus connect, double durationMilliseconds);

    [LoggerMessage(116, LogLevel.Information, "cache {Destination}: entry removed, the upstream connect failed ({Status}); the next SYN probes again")]
    public static partial void CacheEntryRemoved(ILogger logger, EndPoint destination, UpstreamConnectStatus status);

    /// <summary>The queue's receive-to-verdict percentiles at stop (<c>VerdictLatency.ToString()</c>, parsed by the bench).</summary>
    [LoggerMessage(117, LogLevel.Information, "{Line}")]
    public static partial void DecisionLatency(ILogger logger, string line);

    /// <summary>The <see cref="Syn"/> line at Debug: routine cache-hit passes beyond the sampled one (<see cref="CachePassLogSampler"/>).</summary>
    [LoggerMessage(118, LogLevel.Debug, "syn {Client} -> {Destination} {Kind}: {Verdict} ({Reason})")]
    public static partial void SynPassedFromCache(ILogger logger, IPEndPoint client, IPEndPoint destination, SynKind kind, string verdict, string reason);

    /// <summary>The <see cref="JoinSyn"/> line at Debug: foreign MP_JOINs beyond the sampled one (<see cref="CachePassLogSampler"/>).</summary>
    [LoggerMessage(119, LogLevel.Debug, "syn {Client} -> {Destination} {Kind} token={Token:x8}: {Verdict} ({Reason})")]
    public static partial void JoinSynPassed(ILogger logger, IPEndPoint client, IPEndPoint destination, SynKind kind, uint token, string verdict, string reason);

    [LoggerMessage(115, LogLevel.Warning, "telemetry: no subflow events: {Message}")]
    public static partial void NoSubflowEvents(ILogger logger, string message);
}

/// <summary>An <see cref="ILogger"/> that hands each formatted message to a delegate: the engine's former <c>Action&lt;string&gt;</c> sink.</summary>
public sealed class LineLogger(Action<string> write) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        write(formatter(state, exception));
    }
}
