using System.Net;
using Microsoft.Extensions.Logging;
using ProxySelection.Negotiation;
using ProxySelection.Relay;

namespace ProxySelection.Engine;

/// <summary>
/// The engine's log lines, event ids 100..199. Per-packet and per-connection lines are at Debug (a flood of SYNs must
/// not write a line each at the default level: issue 12 measured 46.8 MB in 40 s); Information is for start and stop,
/// Warning for what an operator acts on. Programs read <see cref="Diagnostics.ProxyEvent"/>s, never this text.
/// </summary>
internal static partial class ProxyEngineLog
{
    [LoggerMessage(100, LogLevel.Debug, "syn {Client} -> {Destination} {Kind}: {Verdict} ({Reason})")]
    public static partial void Syn(ILogger logger, IPEndPoint client, IPEndPoint destination, SynKind kind, string verdict, string reason);

    [LoggerMessage(101, LogLevel.Debug, "syn {Client} -> {Destination} {Kind} token={Token:x8}: {Verdict} ({Reason})")]
    public static partial void JoinSyn(ILogger logger, IPEndPoint client, IPEndPoint destination, SynKind kind, uint token, string verdict, string reason);

    [LoggerMessage(103, LogLevel.Debug, "join {Client} -> {Destination} token={Token:x8}: {Verdict} ({Reason}, waited)")]
    public static partial void ParkedJoin(ILogger logger, IPEndPoint client, IPEndPoint destination, uint token, string verdict, string reason);

    [LoggerMessage(105, LogLevel.Debug, "answered probe {Client} -> {Destination} with {Kind}")]
    public static partial void ProbeAnswerSent(ILogger logger, IPEndPoint client, IPEndPoint destination, string kind);

    [LoggerMessage(106, LogLevel.Warning, "probe {ProbeId} to {Destination}: socket failed: {Error}")]
    public static partial void ProbeSocketFailed(ILogger logger, long probeId, IPEndPoint destination, System.Net.Sockets.SocketError error);

    [LoggerMessage(107, LogLevel.Debug, "probe {ProbeId} to {Destination}: {Outcome}, mp_capable={MpCapable} signal={Signal}")]
    public static partial void ProbeEnded(ILogger logger, long probeId, IPEndPoint destination, string outcome, bool mpCapable, string? signal);

    [LoggerMessage(108, LogLevel.Debug, "hold {Client} -> {Destination}: {Outcome} ({Reason}) after {HoldMilliseconds:F1} ms")]
    public static partial void HoldResolved(ILogger logger, IPEndPoint client, IPEndPoint destination, HoldOutcome outcome, DecisionReason reason, double holdMilliseconds);

    [LoggerMessage(109, LogLevel.Warning, "verdict failed, SYN accepted untouched: {ExceptionType}: {Message}")]
    public static partial void VerdictFailed(ILogger logger, string exceptionType, string message);

    [LoggerMessage(110, LogLevel.Warning, "hook: {Message}")]
    public static partial void HookError(ILogger logger, string message);

    [LoggerMessage(111, LogLevel.Warning, "hook failed, packet accepted untouched: {ExceptionType}: {Message}")]
    public static partial void HookFailed(ILogger logger, string exceptionType, string message);

    [LoggerMessage(112, LogLevel.Debug, "intercepted connection {Client} -> {Destination} closed before relaying: {Reason}")]
    public static partial void Expired(ILogger logger, IPEndPoint client, IPEndPoint destination, string reason);

    [LoggerMessage(113, LogLevel.Debug, "accepted {Client} -> {Local} token={Token:x8}")]
    public static partial void Accepted(ILogger logger, EndPoint? client, EndPoint? local, uint token);

    [LoggerMessage(114, LogLevel.Debug,
        "relay {Client} -> {Destination}: {Reason} up={Up} down={Down} subflows={Subflows} upstream_subflows={UpstreamSubflows} client={ClientMptcp} upstream={UpstreamMptcp} connect={Connect}, lasted {DurationMilliseconds:F0} ms")]
    public static partial void Relayed(ILogger logger, IPEndPoint? client, IPEndPoint? destination, Relay.CloseReason reason, long up, long down, int subflows,
        int upstreamSubflows, Relay.MptcpStatus clientMptcp, Relay.MptcpStatus upstreamMptcp, string connect, double durationMilliseconds);

    [LoggerMessage(115, LogLevel.Warning, "telemetry: no subflow events: {Message}")]
    public static partial void NoSubflowEvents(ILogger logger, string message);

    [LoggerMessage(116, LogLevel.Information, "cache {Destination}: entry removed, the upstream connect failed ({Status}); the next SYN probes again")]
    public static partial void CacheEntryRemoved(ILogger logger, EndPoint destination, UpstreamConnectStatus status);

    /// <summary>The queue's receive-to-verdict percentiles at stop (<c>VerdictLatency.ToString()</c>, parsed by the bench).</summary>
    [LoggerMessage(118, LogLevel.Information, "proxysel: warmed up, {Methods} methods compiled in {Milliseconds:F0} ms before the queue was bound")]
    public static partial void WarmedUp(ILogger logger, int methods, double milliseconds);

    [LoggerMessage(136, LogLevel.Information, "proxysel: rehearsed a cache-miss SYN end to end (hold, probe, intercept, signed SYN/ACK) in {Milliseconds:F0} ms")]
    public static partial void Rehearsed(ILogger logger, double milliseconds);

    [LoggerMessage(137, LogLevel.Warning, "proxysel: the start's rehearsal of a SYN did not finish; the first connection compiles the rest")]
    public static partial void RehearsalIncomplete(ILogger logger);

    [LoggerMessage(119, LogLevel.Warning, "proxysel: {Skipped} warning lines left out (more than {PerSecond} a second); the counters count all")]
    public static partial void WarningsLeftOut(ILogger logger, long skipped, int perSecond);

    [LoggerMessage(117, LogLevel.Information, "{Line}")]
    public static partial void DecisionLatency(ILogger logger, string line);

    [LoggerMessage(133, LogLevel.Information,
        "proxysel: kernel signing on: the kernel writes MP_PROXY on the listeners' SYN/ACKs and the upstream legs' SYNs (cgroup {Cgroup}; Proxy:KernelSigning)")]
    public static partial void KernelSigningOn(ILogger logger, string cgroup);

    [LoggerMessage(135, LogLevel.Warning,
        "proxysel: Proxy:KernelFastPath and Proxy:KernelSigning: the ipset tool is missing (package ipset); every SYN is decided and every signal signed through the queue")]
    public static partial void NoIpsetForKernelPaths(ILogger logger);

    [LoggerMessage(138, LogLevel.Information,
        "proxysel: kernel signing: relabelling MPTCP segments leaving by {Interface} too (an interface that came up after the start)")]
    public static partial void KernelRelabelAttached(ILogger logger, string @interface);

    [LoggerMessage(139, LogLevel.Warning,
        "proxysel: kernel signing: {Reason}; the MPTCP SYN/ACKs leaving by it carry no Claim until it takes the program (retried every second)")]
    public static partial void KernelRelabelRefused(ILogger logger, string reason);

    [LoggerMessage(140, LogLevel.Information,
        "proxysel: kernel joins on: MP_JOINs of connections this proxy holds go to its listener without the queue (match {Match}; Proxy:KernelJoins)")]
    public static partial void KernelJoinsOn(ILogger logger, string match);

    [LoggerMessage(141, LogLevel.Warning,
        "proxysel: Proxy:KernelJoins: {Reason}; every MP_JOIN crosses the queue instead")]
    public static partial void KernelJoinsUnavailable(ILogger logger, string reason);

    [LoggerMessage(142, LogLevel.Information,
        "proxysel: kernel joins: MP_JOINs for tokens not this proxy's pass in the kernel ({Reason})")]
    public static partial void KernelForeignJoinsOpen(ILogger logger, string reason);

    [LoggerMessage(143, LogLevel.Information,
        "proxysel: kernel joins: the join map may lack a token ({Reason}); MP_JOINs for tokens not in it cross the queue for at least 30 s")]
    public static partial void KernelForeignJoinsClosed(ILogger logger, string reason);

    [LoggerMessage(134, LogLevel.Warning,
        "proxysel: Proxy:KernelSigning: {Reason}; signing through the egress queue instead")]
    public static partial void KernelSigningUnavailable(ILogger logger, string reason);

    [LoggerMessage(130, LogLevel.Information,
        "proxysel: scheduling: {Threads} threads at nice {Nice}, hold clock {Schedule}, queue threads {QueueSchedule} (a raise needs CAP_SYS_NICE, or LimitNICE and LimitRTPRIO; Proxy:RaisedScheduling)")]
    public static partial void Scheduling(ILogger logger, int threads, int nice, Interception.Nfqueue.ThreadSchedule schedule, Interception.Nfqueue.ThreadSchedule queueSchedule);

    [LoggerMessage(131, LogLevel.Information,
        "proxysel: memory trimmed after a flood: GC heap committed {BeforeMiB:F1} -> {AfterMiB:F1} MiB, working set {RssBeforeMiB:F1} -> {RssAfterMiB:F1} MiB, in {Milliseconds:F0} ms")]
    public static partial void Trimmed(ILogger logger, double beforeMiB, double afterMiB, double rssBeforeMiB, double rssAfterMiB, double milliseconds);

    [LoggerMessage(132, LogLevel.Information,
        "proxysel: gc: {Gen0}/{Gen1}/{Gen2} collections (gen0/1/2), paused {PausedMs:F0} ms in all ({PausePercent:F1} % of the run), last pause {LastPauseMs:F1} ms")]
    public static partial void GcSummary(ILogger logger, int gen0, int gen1, int gen2, double pausedMs, double pausePercent, double lastPauseMs);
}

/// <summary>An <see cref="ILogger"/> that hands each formatted message to a delegate: the engine's former <c>Action&lt;string&gt;</c> sink.</summary>
public sealed class LineLogger(Action<string> write, LogLevel minimum = LogLevel.Information) : ILogger
{
    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && logLevel >= minimum;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        ArgumentNullException.ThrowIfNull(formatter);
        if (IsEnabled(logLevel))
        {
            write(formatter(state, exception));
        }
    }
}
