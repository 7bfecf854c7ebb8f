using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace ProxySelection.Engine.Diagnostics;

/// <summary>
/// One thing the engine decided or saw, as structured data: what other programs (the lab demo, the interop runner, the
/// integration tests) read instead of parsing log prose. Written as one JSON object per line (<see cref="JsonLinesEventSink"/>),
/// read back with <see cref="ProxyEvents.Parse"/>. Fields that do not apply to an event are absent.
/// </summary>
/// <remarks>
/// Event names (<see cref="Event"/>) and the fields each carries:
/// <list type="bullet">
/// <item><c>started</c>: Role, Mode, Policy, ProxyId, Ports, Queue, InstanceId (service.instance.id) — the rules are in and the hook is bound.</item>
/// <item><c>syn</c>: Client, Destination, Kind (<c>Tcp</c>, <c>MpCapable</c>, <c>MpJoin</c>), Token (MP_JOIN), Verdict, Reason.</item>
/// <item><c>probe</c>: ProbeId, Destination, Outcome (<c>answered</c>, <c>timed_out</c>, <c>failed</c>), MpCapable, Signal, SignalProxy.</item>
/// <item><c>hold</c>: Client, Destination, Outcome (a <c>HoldOutcome</c> name), Reason, Milliseconds.</item>
/// <item><c>join</c>: Client, Destination, Token, Verdict, Reason — a parked MP_JOIN released or taken over.</item>
/// <item><c>accepted</c>: Client, Destination, Token (null for a plain TCP client leg) — the intercepted connection reached the listener.</item>
/// <item><c>expired</c>: Client, Destination, Reason — an intercepted connection that never arrived.</item>
/// <item><c>relay</c>: Client, Destination, Reason (close reason), Up, Down, Subflows, UpstreamSubflows, ClientMptcp,
/// UpstreamMptcp, Connect, ConnectMilliseconds, Milliseconds (lifetime).</item>
/// <item><c>stopped</c>: Counters — the same counts as the metrics and the stop line.</item>
/// </list>
/// </remarks>
public sealed record ProxyEvent
{
    public required string Event { get; init; }

    public DateTimeOffset Time { get; init; }

    public string? Client { get; init; }

    public string? Destination { get; init; }

    public string? Kind { get; init; }

    public string? Token { get; init; }

    public string? Verdict { get; init; }

    public string? Reason { get; init; }

    public string? Outcome { get; init; }

    public long? ProbeId { get; init; }

    public bool? MpCapable { get; init; }

    public string? Signal { get; init; }

    public int? SignalProxy { get; init; }

    public double? Milliseconds { get; init; }

    public long? Up { get; init; }

    public long? Down { get; init; }

    public int? Subflows { get; init; }

    public int? UpstreamSubflows { get; init; }

    public string? ClientMptcp { get; init; }

    public string? UpstreamMptcp { get; init; }

    public string? Connect { get; init; }

    public double? ConnectMilliseconds { get; init; }

    public string? Role { get; init; }

    public string? Mode { get; init; }

    public string? Policy { get; init; }

    public int? ProxyId { get; init; }

    public string? Ports { get; init; }

    public int? Queue { get; init; }

    /// <summary>The daemon's service.instance.id (Proxy:Instance:Id or its default), as its telemetry carries it.</summary>
    public string? InstanceId { get; init; }

    public IReadOnlyDictionary<string, long>? Counters { get; init; }
}

/// <summary>Where the engine's <see cref="ProxyEvent"/>s go. <see cref="Enabled"/> false: the engine builds none.</summary>
public interface IProxyEventSink
{
    bool Enabled { get; }

    void Write(ProxyEvent proxyEvent);
}

/// <summary>No events (the default).</summary>
public sealed class NullProxyEventSink : IProxyEventSink
{
    public static readonly NullProxyEventSink Instance = new();

    public bool Enabled => false;

    public void Write(ProxyEvent proxyEvent)
    {
    }
}

/// <summary>JSON lines on a stream, one event per line, flushed per line (a reader tailing the file sees each at once).</summary>
/// <remarks>Thread-safe: the hook thread and the relay's tasks write concurrently. Owns the stream.</remarks>
public sealed class JsonLinesEventSink(Stream stream) : IProxyEventSink, IDisposable
{
    private static readonly byte[] NewLine = "\n"u8.ToArray();
    private readonly Lock _lock = new();
    private bool _disposed;

    public bool Enabled => true;

    /// <summary>Appends to <paramref name="path"/> (created if missing).</summary>
    public static JsonLinesEventSink Open(string path) =>
        new(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete));

    public void Write(ProxyEvent proxyEvent)
    {
        ArgumentNullException.ThrowIfNull(proxyEvent);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(proxyEvent, ProxyEventJsonContext.Default.ProxyEvent);
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            try
            {
                stream.Write(bytes);
                stream.Write(NewLine);
                stream.Flush();
            }
            catch (IOException)
            {
                // A full disk or a closed pipe must not reach the packet hook: events are diagnostics.
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            if (!_disposed)
            {
                _disposed = true;
                stream.Dispose();
            }
        }
    }
}

/// <summary>Reads what <see cref="JsonLinesEventSink"/> wrote.</summary>
public static class ProxyEvents
{
    /// <summary>Every complete line of <paramref name="text"/> that is an event; a torn last line (still being written) is skipped.</summary>
    public static IReadOnlyList<ProxyEvent> Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var events = new List<ProxyEvent>();
        foreach (var line in text.Split('\n'))
        {
            var trimmed = line.Trim();
            if (trimmed.Length == 0 || trimmed[0] != '{')
            {
                continue;
            }

            try
            {
                if (JsonSerializer.Deserialize(trimmed, ProxyEventJsonContext.Default.ProxyEvent) is { } e)
                {
                    events.Add(e);
                }
            }
            catch (JsonException)
            {
            }
        }

        return events;
    }

    /// <summary>The events in the file at <paramref name="path"/> (none when it does not exist yet).</summary>
    public static IReadOnlyList<ProxyEvent> ReadFile(string path)
    {
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return Parse(reader.ReadToEnd());
        }
        catch (FileNotFoundException)
        {
            return [];
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(ProxyEvent))]
internal sealed partial class ProxyEventJsonContext : JsonSerializerContext;
