using System.Net.Sockets;

namespace ProxySelection.Relay;

/// <summary>Sorts socket failures into what the relay does about them.</summary>
public static class SocketErrors
{
    public static SocketFailure Classify(Exception exception, out SocketError error)
    {
        ArgumentNullException.ThrowIfNull(exception);
        switch (exception)
        {
            case SocketException e:
                error = e.SocketErrorCode;
                return e.SocketErrorCode switch
                {
                    // EPIPE surfaces as Shutdown; ECONNABORTED is the kernel giving up on the connection
                    // (e.g. an MPTCP fast close): the peer's connection is gone either way.
                    SocketError.ConnectionReset or SocketError.Shutdown or SocketError.ConnectionAborted => SocketFailure.Reset,
                    SocketError.OperationAborted or SocketError.Interrupted => SocketFailure.Abort,
                    _ => SocketFailure.Unexpected,
                };
            case ObjectDisposedException or OperationCanceledException:
                error = SocketError.OperationAborted;
                return SocketFailure.Abort;
            case IOException { InnerException: SocketException inner }:
                return Classify(inner, out error);
            default:
                error = SocketError.SocketError;
                return SocketFailure.Unexpected;
        }
    }

    /// <summary>The SocketError .NET reports for a Linux errno from a direct syscall (the relay's recv(2)).</summary>
    internal static SocketError FromErrno(int errno) => errno switch
    {
        104 /* ECONNRESET */ => SocketError.ConnectionReset,
        32 /* EPIPE */ => SocketError.Shutdown,
        103 /* ECONNABORTED */ => SocketError.ConnectionAborted,
        110 /* ETIMEDOUT */ => SocketError.TimedOut,
        107 /* ENOTCONN */ => SocketError.NotConnected,
        113 /* EHOSTUNREACH */ => SocketError.HostUnreachable,
        101 /* ENETUNREACH */ => SocketError.NetworkUnreachable,
        9 /* EBADF */ => SocketError.OperationAborted,
        _ => SocketError.SocketError,
    };
}
