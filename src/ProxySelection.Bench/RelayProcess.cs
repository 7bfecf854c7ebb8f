using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using ProxySelection.Relay;

namespace ProxySelection.Bench;

/// <summary>
/// The body of the hidden <c>proxysel-lab bench relay</c> verb: our relay as its own process, so the bench measures its
/// CPU and memory from /proc exactly like HAProxy's and socat's. A plain (non-transparent) listener on
/// <c>listen</c>; every accepted connection is relayed to <c>upstream</c> over TCP. Runs until SIGTERM/SIGINT.
/// </summary>
public static class RelayProcess
{
    /// <summary>Printed once the listener is open; the bench waits for it.</summary>
    public const string ReadyLine = "relay listening";

    public static async Task<int> RunAsync(IPEndPoint listen, IPEndPoint upstream, TransportProtocol clientProtocol, TextWriter output,
        CancellationToken cancellationToken = default, bool splice = false, int? readSize = null)
    {
        ArgumentNullException.ThrowIfNull(listen);
        ArgumentNullException.ThrowIfNull(upstream);
        ArgumentNullException.ThrowIfNull(output);
        SocketRuntime.UseInlineCompletions();
        // A TaskCompletionSource, not a CancellationTokenSource: a second signal arriving while the registrations are being
        // disposed must not throw ObjectDisposedException on the signal thread (seen: the process aborted at stop).
        var stop = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = true; stop.TrySetResult(); });

        var options = BenchRelayOptions(clientProtocol);
        options.Splice = splice;
        options.ReadSize = readSize ?? options.ReadSize;
        var listenerOptions = BenchListenerOptions(listen);
        await using var connector = new UpstreamConnector(new UpstreamConnectorOptions(), SocketFactory.Default, TimeProvider.System);
        await using var relay = new RelayServer(options, listenerOptions, SocketFactory.Default, connector, TimeProvider.System, _ => { },
            _ => upstream);
        var listener = relay.EnsureListener(listen.Port, listen.AddressFamily);
        await output.WriteLineAsync($"{ReadyLine} on {listener.LocalEndPoint} ({clientProtocol}) → {upstream} (TCP){(splice ? ", splice" : "")}").ConfigureAwait(false);
        await output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            await stop.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // SIGTERM: the normal end.
        }
        return 0;
    }

    /// <summary>Relay settings for the bench: defaults, except nothing may time out or be refused while 10,000 idle
    /// connections are held for the memory figure.</summary>
    public static RelayOptions BenchRelayOptions(TransportProtocol clientProtocol) => new()
    {
        ClientProtocol = clientProtocol,
        UpstreamProtocol = TransportProtocol.Tcp,
        IdleTimeout = Timeout.InfiniteTimeSpan,
        MaxConnections = 60_000,
    };

    /// <summary>A plain (non-transparent) listener on exactly <paramref name="listen"/>'s address.</summary>
    public static ListenerOptions BenchListenerOptions(IPEndPoint listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        var options = new ListenerOptions { Transparent = false, Backlog = 4096 };
        if (listen.AddressFamily == AddressFamily.InterNetwork)
        {
            options.BindAddressV4 = listen.Address;
        }
        else
        {
            options.BindAddressV6 = listen.Address;
        }
        return options;
    }
}
