using System.Net;
using System.Net.Sockets;
using ProxySelection.Relay;

namespace ProxySelection.Engine.Hook;

/// <summary>
/// Opens the engine's probe connections (design §4.1). The daemon's is <see cref="SocketProbeConnector"/> (real MPTCP
/// sockets carrying the egress mark); unit tests answer or time out probes without a network.
/// </summary>
public interface IProbeConnector
{
    /// <summary>A probe socket toward <paramref name="destination"/>, bound already; throws <see cref="SocketException"/> when none can be made.</summary>
    IProbeSocket Open(IPEndPoint destination);
}

/// <summary>One probe connection.</summary>
public interface IProbeSocket : IDisposable
{
    /// <summary>The bound source port: the egress hook tells the probe's SYN by it, the ingress hook its SYN/ACK.</summary>
    ushort LocalPort { get; }

    /// <summary>Completes when the server answered; throws (<see cref="SocketException"/>, cancellation) when it did not.</summary>
    Task ConnectAsync(IPEndPoint destination, CancellationToken cancellationToken);

    /// <summary>Whether the kernel has the connection established (the answer arrived), whether or not the connect's completion ran.</summary>
    bool IsEstablished { get; }

    /// <summary>After the connect: whether the kernel's connection is MPTCP (the answer carried MP_CAPABLE).</summary>
    bool IsMptcp { get; }

    /// <summary>The connected socket, for adoption as the intercepted connection's upstream leg; null when there is none to adopt.</summary>
    Socket? Socket { get; }

    /// <summary>Closes with a RST, not a FIN: the probe's server must not take it for a finished request.</summary>
    void Abort();
}

/// <summary>Real probes: MPTCP sockets from <paramref name="sockets"/> (the marking factory, so their SYNs pass the egress hook).</summary>
public sealed class SocketProbeConnector(SocketFactory sockets) : IProbeConnector
{
    public IProbeSocket Open(IPEndPoint destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        var socket = sockets.Create(destination.AddressFamily, TransportProtocol.Mptcp);
        try
        {
            socket.NoDelay = true;
            // Bound first so the egress hook can tell this probe's SYN by its source port.
            socket.Bind(new IPEndPoint(destination.AddressFamily == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0));
            return new SocketProbe(socket, (ushort)((IPEndPoint)socket.LocalEndPoint!).Port);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private sealed class SocketProbe(Socket socket, ushort localPort) : IProbeSocket
    {
        public ushort LocalPort => localPort;

        public bool IsMptcp => MptcpSocket.TryGetInfo(socket, out _) == MptcpStatus.Active;

        public bool IsEstablished => SocketState.HasPeer(socket);

        public Socket? Socket => socket;

        public Task ConnectAsync(IPEndPoint destination, CancellationToken cancellationToken) =>
            socket.ConnectAsync(destination, cancellationToken).AsTask();

        public void Abort() => Sockets.CloseAbortively(socket);

        public void Dispose() => socket.Dispose();
    }
}

/// <summary>Socket helpers shared by the probe and flow code.</summary>
internal static class Sockets
{
    public static void CloseAbortively(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }

        socket.Dispose();
    }
}
