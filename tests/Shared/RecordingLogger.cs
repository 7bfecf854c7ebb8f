using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace ProxySelection.Tests;

/// <summary>An <see cref="ILogger"/> that keeps every entry, for asserting which events a component logged.</summary>
internal sealed class RecordingLogger : ILogger
{
    public ConcurrentQueue<(LogLevel Level, EventId Id, string Message, Exception? Exception)> Entries { get; } = new();

    public IEnumerable<int> EventIds => Entries.Select(e => e.Id.Id);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
        Entries.Enqueue((logLevel, eventId, formatter(state, exception), exception));
}
