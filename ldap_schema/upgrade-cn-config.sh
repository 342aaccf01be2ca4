#!/bin/sh
# Replace the definitions of an already loaded twostep schema in cn=config with those of
# twostep.ldif next to this script. Run as root on the LDAP server:
#   sh upgrade-cn-config.sh [ldapi:///]
# slapd refuses a change that would invalidate stored values, so nothing is lost silently.
set -eu
uri=${1:-ldapi:///}
ldif=$(dirname "$0")/twostep.ldif
dn=$(ldapsearch -Q -LLL -Y EXTERNAL -H "$uri" -b cn=schema,cn=config '(cn=*twostep)' dn \
     | sed -n 's/^dn: //p')
if [ -z "$dn" ]; then
    echo "no twostep schema loaded yet: use ldapadd -Y EXTERNAL -H $uri -f $ldif" >&2
    exit 1
fi
{
    echo "dn: $dn"
    echo "changetype: modify"
    echo "replace: olcAttributeTypes"
    sed -n '/^olcAttributeTypes/,/^olcObjectClasses/p' "$ldif" | sed '$d'
    echo "-"
    echo "replace: olcObjectClasses"
    sed -n '/^olcObjectClasses/,$p' "$ldif"
} | ldapmodify -Q -Y EXTERNAL -H "$uri"
