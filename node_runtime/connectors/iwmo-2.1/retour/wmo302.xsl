<?xml version="1.0" encoding="UTF-8"?>
<!--
  WMO302 "Toewijzing Wmo-ondersteuning Retour" (BerichtCode 415) answering a WMO301 (414).

  Input: a copy of the WMO301 in which the knooppunt appended <kp:RetourCode> elements as
  the last children of each element a failing rule points at. Output: the WMO302, valid
  against wmo302.xsd, carrying per Header / Client / Relatie / Contact / Beschikking /
  Beperking / BeperkingScore / BeschiktProduct / ToegewezenProduct the codes attached to that
  element (or to a descendant that has no RetourCodes of its own), otherwise $default-code.
  Codes attached to the root or to Clienten are reported on the Header.
-->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:src="http://www.istandaarden.nl/iwmo/2_1/wmo301/schema/2_1"
    xmlns:wmo302="http://www.istandaarden.nl/iwmo/2_1/wmo302/schema/2_1"
    xmlns:iwmo="http://www.istandaarden.nl/iwmo/2_1/basisschema/schema/2_1"
    xmlns:kp="urn:knooppunt:retour"
    exclude-result-prefixes="src kp">

  <xsl:output method="xml" encoding="UTF-8" indent="yes"/>
  <xsl:strip-space elements="*"/>

  <xsl:param name="retour-id" select="''"/>
  <xsl:param name="retour-date" select="''"/>
  <xsl:param name="default-code" select="'0200'"/>

  <!-- Each code belongs to its nearest ancestor that carries RetourCodes in the retour; the
       Header when there is none (document order puts the Header before every other carrier). -->
  <xsl:key name="codes" match="kp:RetourCode"
      use="generate-id((ancestor::*[
                 self::src:Header or self::src:Client or self::src:Relatie or self::src:Contact
                 or self::src:Beschikking or self::src:Beperking[parent::src:Beperkingen]
                 or self::src:BeperkingScore or self::src:BeschiktProduct
                 or self::src:ToegewezenProduct][1]
               | /src:Bericht/src:Header)[last()])"/>
  <xsl:key name="code-values" match="kp:RetourCode"
      use="concat(generate-id((ancestor::*[
                 self::src:Header or self::src:Client or self::src:Relatie or self::src:Contact
                 or self::src:Beschikking or self::src:Beperking[parent::src:Beperkingen]
                 or self::src:BeperkingScore or self::src:BeschiktProduct
                 or self::src:ToegewezenProduct][1]
               | /src:Bericht/src:Header)[last()]), '|', normalize-space(.))"/>

  <xsl:template match="/">
    <xsl:apply-templates select="src:Bericht"/>
  </xsl:template>

  <xsl:template match="src:Bericht">
    <wmo302:Bericht>
      <xsl:apply-templates select="src:Header"/>
      <xsl:apply-templates select="src:Clienten"/>
    </wmo302:Bericht>
  </xsl:template>

  <xsl:template match="src:Header">
    <wmo302:Header>
      <wmo302:BerichtCode>415</wmo302:BerichtCode>
      <xsl:apply-templates select="src:BerichtVersie | src:BerichtSubversie | src:Afzender
                                   | src:Ontvanger | src:BerichtIdentificatie"/>
      <wmo302:IdentificatieRetour><xsl:value-of select="$retour-id"/></wmo302:IdentificatieRetour>
      <wmo302:DagtekeningRetour><xsl:value-of select="$retour-date"/></wmo302:DagtekeningRetour>
      <xsl:call-template name="retourcodes"/>
    </wmo302:Header>
  </xsl:template>

  <!-- Record classes that carry RetourCodes in the WMO302. -->
  <xsl:template match="src:Client | src:Relatie | src:Contact | src:Beschikking
                       | src:Beperkingen/src:Beperking | src:BeperkingScore
                       | src:BeschiktProduct | src:ToegewezenProduct">
    <xsl:element name="wmo302:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo302/schema/2_1">
      <xsl:apply-templates select="*"/>
      <xsl:call-template name="retourcodes"/>
    </xsl:element>
  </xsl:template>

  <!-- Any other element of the message namespace: same local name in the retour namespace.
       node() copies text and elements as '* | text()' would (comments and processing
       instructions have built-in templates that output nothing), without a union to sort;
       the namespace is literal rather than a variable: both make the retour cheaper. -->
  <xsl:template match="src:*">
    <xsl:element name="wmo302:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/wmo302/schema/2_1">
      <xsl:apply-templates select="node()"/>
    </xsl:element>
  </xsl:template>

  <!-- Shared data types (basisschema) keep their namespace. -->
  <xsl:template match="iwmo:*">
    <xsl:element name="iwmo:{local-name()}"
        namespace="http://www.istandaarden.nl/iwmo/2_1/basisschema/schema/2_1">
      <xsl:apply-templates select="node()"/>
    </xsl:element>
  </xsl:template>

  <!-- The node's annotations and anything foreign are never copied. -->
  <xsl:template match="*"/>

  <xsl:template name="retourcodes">
    <xsl:variable name="owner" select="generate-id(.)"/>
    <xsl:variable name="codes" select="key('codes', $owner)"/>
    <wmo302:RetourCodes>
      <xsl:choose>
        <xsl:when test="$codes">
          <xsl:for-each select="$codes">
            <xsl:if test="generate-id(.) = generate-id(key('code-values', concat($owner, '|', normalize-space(.)))[1])">
              <wmo302:RetourCode><xsl:value-of select="normalize-space(.)"/></wmo302:RetourCode>
            </xsl:if>
          </xsl:for-each>
        </xsl:when>
        <xsl:otherwise>
          <wmo302:RetourCode><xsl:value-of select="$default-code"/></wmo302:RetourCode>
        </xsl:otherwise>
      </xsl:choose>
    </wmo302:RetourCodes>
  </xsl:template>

  <!-- BEGIN generated literal templates (tests/connector/retour_templates.py; do not edit):
       the same copies as the generic src:* and iwmo:* templates, as literal result
       elements, which libxslt instantiates without evaluating a name per element. -->
  <xsl:template match="src:Aanbieder"><wmo302:Aanbieder><xsl:apply-templates select="node()"/></wmo302:Aanbieder></xsl:template>
  <xsl:template match="src:Adres"><wmo302:Adres><xsl:apply-templates select="node()"/></wmo302:Adres></xsl:template>
  <xsl:template match="src:Afgiftedatum"><wmo302:Afgiftedatum><xsl:apply-templates select="node()"/></wmo302:Afgiftedatum></xsl:template>
  <xsl:template match="src:Afzender"><wmo302:Afzender><xsl:apply-templates select="node()"/></wmo302:Afzender></xsl:template>
  <xsl:template match="src:Beperking"><wmo302:Beperking><xsl:apply-templates select="node()"/></wmo302:Beperking></xsl:template>
  <xsl:template match="src:BeperkingScores"><wmo302:BeperkingScores><xsl:apply-templates select="node()"/></wmo302:BeperkingScores></xsl:template>
  <xsl:template match="src:Beperkingen"><wmo302:Beperkingen><xsl:apply-templates select="node()"/></wmo302:Beperkingen></xsl:template>
  <xsl:template match="src:BerichtCode"><wmo302:BerichtCode><xsl:apply-templates select="node()"/></wmo302:BerichtCode></xsl:template>
  <xsl:template match="src:BerichtIdentificatie"><wmo302:BerichtIdentificatie><xsl:apply-templates select="node()"/></wmo302:BerichtIdentificatie></xsl:template>
  <xsl:template match="src:BerichtSubversie"><wmo302:BerichtSubversie><xsl:apply-templates select="node()"/></wmo302:BerichtSubversie></xsl:template>
  <xsl:template match="src:BerichtVersie"><wmo302:BerichtVersie><xsl:apply-templates select="node()"/></wmo302:BerichtVersie></xsl:template>
  <xsl:template match="src:BeschikkingNummer"><wmo302:BeschikkingNummer><xsl:apply-templates select="node()"/></wmo302:BeschikkingNummer></xsl:template>
  <xsl:template match="src:BeschiktProducten"><wmo302:BeschiktProducten><xsl:apply-templates select="node()"/></wmo302:BeschiktProducten></xsl:template>
  <xsl:template match="src:Bsn"><wmo302:Bsn><xsl:apply-templates select="node()"/></wmo302:Bsn></xsl:template>
  <xsl:template match="src:Clienten"><wmo302:Clienten><xsl:apply-templates select="node()"/></wmo302:Clienten></xsl:template>
  <xsl:template match="src:Commentaar"><wmo302:Commentaar><xsl:apply-templates select="node()"/></wmo302:Commentaar></xsl:template>
  <xsl:template match="src:Communicatie"><wmo302:Communicatie><xsl:apply-templates select="node()"/></wmo302:Communicatie></xsl:template>
  <xsl:template match="src:Contactgegevens"><wmo302:Contactgegevens><xsl:apply-templates select="node()"/></wmo302:Contactgegevens></xsl:template>
  <xsl:template match="src:Duur"><wmo302:Duur><xsl:apply-templates select="node()"/></wmo302:Duur></xsl:template>
  <xsl:template match="src:Einddatum"><wmo302:Einddatum><xsl:apply-templates select="node()"/></wmo302:Einddatum></xsl:template>
  <xsl:template match="src:Emailadres"><wmo302:Emailadres><xsl:apply-templates select="node()"/></wmo302:Emailadres></xsl:template>
  <xsl:template match="src:Geboortedatum"><wmo302:Geboortedatum><xsl:apply-templates select="node()"/></wmo302:Geboortedatum></xsl:template>
  <xsl:template match="src:Geslacht"><wmo302:Geslacht><xsl:apply-templates select="node()"/></wmo302:Geslacht></xsl:template>
  <xsl:template match="src:Grondslagen"><wmo302:Grondslagen><xsl:apply-templates select="node()"/></wmo302:Grondslagen></xsl:template>
  <xsl:template match="src:Ingangsdatum"><wmo302:Ingangsdatum><xsl:apply-templates select="node()"/></wmo302:Ingangsdatum></xsl:template>
  <xsl:template match="src:JuridischeStatus"><wmo302:JuridischeStatus><xsl:apply-templates select="node()"/></wmo302:JuridischeStatus></xsl:template>
  <xsl:template match="src:Naam"><wmo302:Naam><xsl:apply-templates select="node()"/></wmo302:Naam></xsl:template>
  <xsl:template match="src:Nummer"><wmo302:Nummer><xsl:apply-templates select="node()"/></wmo302:Nummer></xsl:template>
  <xsl:template match="src:Omvang"><wmo302:Omvang><xsl:apply-templates select="node()"/></wmo302:Omvang></xsl:template>
  <xsl:template match="src:Ontvanger"><wmo302:Ontvanger><xsl:apply-templates select="node()"/></wmo302:Ontvanger></xsl:template>
  <xsl:template match="src:Organisatie"><wmo302:Organisatie><xsl:apply-templates select="node()"/></wmo302:Organisatie></xsl:template>
  <xsl:template match="src:Periode"><wmo302:Periode><xsl:apply-templates select="node()"/></wmo302:Periode></xsl:template>
  <xsl:template match="src:Product"><wmo302:Product><xsl:apply-templates select="node()"/></wmo302:Product></xsl:template>
  <xsl:template match="src:RedenWijziging"><wmo302:RedenWijziging><xsl:apply-templates select="node()"/></wmo302:RedenWijziging></xsl:template>
  <xsl:template match="src:ReferentieAanbieder"><wmo302:ReferentieAanbieder><xsl:apply-templates select="node()"/></wmo302:ReferentieAanbieder></xsl:template>
  <xsl:template match="src:Relaties"><wmo302:Relaties><xsl:apply-templates select="node()"/></wmo302:Relaties></xsl:template>
  <xsl:template match="src:Score"><wmo302:Score><xsl:apply-templates select="node()"/></wmo302:Score></xsl:template>
  <xsl:template match="src:Soort"><wmo302:Soort><xsl:apply-templates select="node()"/></wmo302:Soort></xsl:template>
  <xsl:template match="src:Telefoon"><wmo302:Telefoon><xsl:apply-templates select="node()"/></wmo302:Telefoon></xsl:template>
  <xsl:template match="src:ToegewezenProducten"><wmo302:ToegewezenProducten><xsl:apply-templates select="node()"/></wmo302:ToegewezenProducten></xsl:template>
  <xsl:template match="src:ToewijzingNummer"><wmo302:ToewijzingNummer><xsl:apply-templates select="node()"/></wmo302:ToewijzingNummer></xsl:template>
  <xsl:template match="src:Toewijzingsdatum"><wmo302:Toewijzingsdatum><xsl:apply-templates select="node()"/></wmo302:Toewijzingsdatum></xsl:template>
  <xsl:template match="src:Toewijzingstijd"><wmo302:Toewijzingstijd><xsl:apply-templates select="node()"/></wmo302:Toewijzingstijd></xsl:template>
  <xsl:template match="src:Volgorde"><wmo302:Volgorde><xsl:apply-templates select="node()"/></wmo302:Volgorde></xsl:template>
  <xsl:template match="src:Vraag"><wmo302:Vraag><xsl:apply-templates select="node()"/></wmo302:Vraag></xsl:template>
  <xsl:template match="src:WettelijkeVertegenwoordiging"><wmo302:WettelijkeVertegenwoordiging><xsl:apply-templates select="node()"/></wmo302:WettelijkeVertegenwoordiging></xsl:template>
  <xsl:template match="iwmo:AanduidingWoonadres"><iwmo:AanduidingWoonadres><xsl:apply-templates select="node()"/></iwmo:AanduidingWoonadres></xsl:template>
  <xsl:template match="iwmo:Begindatum"><iwmo:Begindatum><xsl:apply-templates select="node()"/></iwmo:Begindatum></xsl:template>
  <xsl:template match="iwmo:Categorie"><iwmo:Categorie><xsl:apply-templates select="node()"/></iwmo:Categorie></xsl:template>
  <xsl:template match="iwmo:Code"><iwmo:Code><xsl:apply-templates select="node()"/></iwmo:Code></xsl:template>
  <xsl:template match="iwmo:Dagtekening"><iwmo:Dagtekening><xsl:apply-templates select="node()"/></iwmo:Dagtekening></xsl:template>
  <xsl:template match="iwmo:Datum"><iwmo:Datum><xsl:apply-templates select="node()"/></iwmo:Datum></xsl:template>
  <xsl:template match="iwmo:DatumGebruik"><iwmo:DatumGebruik><xsl:apply-templates select="node()"/></iwmo:DatumGebruik></xsl:template>
  <xsl:template match="iwmo:Eenheid"><iwmo:Eenheid><xsl:apply-templates select="node()"/></iwmo:Eenheid></xsl:template>
  <xsl:template match="iwmo:Einddatum"><iwmo:Einddatum><xsl:apply-templates select="node()"/></iwmo:Einddatum></xsl:template>
  <xsl:template match="iwmo:Frequentie"><iwmo:Frequentie><xsl:apply-templates select="node()"/></iwmo:Frequentie></xsl:template>
  <xsl:template match="iwmo:Geslachtsnaam"><iwmo:Geslachtsnaam><xsl:apply-templates select="node()"/></iwmo:Geslachtsnaam></xsl:template>
  <xsl:template match="iwmo:Grondslag01"><iwmo:Grondslag01><xsl:apply-templates select="node()"/></iwmo:Grondslag01></xsl:template>
  <xsl:template match="iwmo:Grondslag02"><iwmo:Grondslag02><xsl:apply-templates select="node()"/></iwmo:Grondslag02></xsl:template>
  <xsl:template match="iwmo:Huis"><iwmo:Huis><xsl:apply-templates select="node()"/></iwmo:Huis></xsl:template>
  <xsl:template match="iwmo:Huisletter"><iwmo:Huisletter><xsl:apply-templates select="node()"/></iwmo:Huisletter></xsl:template>
  <xsl:template match="iwmo:Huisnummer"><iwmo:Huisnummer><xsl:apply-templates select="node()"/></iwmo:Huisnummer></xsl:template>
  <xsl:template match="iwmo:HuisnummerToevoeging"><iwmo:HuisnummerToevoeging><xsl:apply-templates select="node()"/></iwmo:HuisnummerToevoeging></xsl:template>
  <xsl:template match="iwmo:Identificatie"><iwmo:Identificatie><xsl:apply-templates select="node()"/></iwmo:Identificatie></xsl:template>
  <xsl:template match="iwmo:LandCode"><iwmo:LandCode><xsl:apply-templates select="node()"/></iwmo:LandCode></xsl:template>
  <xsl:template match="iwmo:Landnummer"><iwmo:Landnummer><xsl:apply-templates select="node()"/></iwmo:Landnummer></xsl:template>
  <xsl:template match="iwmo:Naam"><iwmo:Naam><xsl:apply-templates select="node()"/></iwmo:Naam></xsl:template>
  <xsl:template match="iwmo:NaamGebruik"><iwmo:NaamGebruik><xsl:apply-templates select="node()"/></iwmo:NaamGebruik></xsl:template>
  <xsl:template match="iwmo:Partnernaam"><iwmo:Partnernaam><xsl:apply-templates select="node()"/></iwmo:Partnernaam></xsl:template>
  <xsl:template match="iwmo:Plaatsnaam"><iwmo:Plaatsnaam><xsl:apply-templates select="node()"/></iwmo:Plaatsnaam></xsl:template>
  <xsl:template match="iwmo:Postcode"><iwmo:Postcode><xsl:apply-templates select="node()"/></iwmo:Postcode></xsl:template>
  <xsl:template match="iwmo:Straatnaam"><iwmo:Straatnaam><xsl:apply-templates select="node()"/></iwmo:Straatnaam></xsl:template>
  <xsl:template match="iwmo:Taal"><iwmo:Taal><xsl:apply-templates select="node()"/></iwmo:Taal></xsl:template>
  <xsl:template match="iwmo:Telefoon01"><iwmo:Telefoon01><xsl:apply-templates select="node()"/></iwmo:Telefoon01></xsl:template>
  <xsl:template match="iwmo:Telefoon02"><iwmo:Telefoon02><xsl:apply-templates select="node()"/></iwmo:Telefoon02></xsl:template>
  <xsl:template match="iwmo:Telefoonnummer"><iwmo:Telefoonnummer><xsl:apply-templates select="node()"/></iwmo:Telefoonnummer></xsl:template>
  <xsl:template match="iwmo:Type"><iwmo:Type><xsl:apply-templates select="node()"/></iwmo:Type></xsl:template>
  <xsl:template match="iwmo:Volume"><iwmo:Volume><xsl:apply-templates select="node()"/></iwmo:Volume></xsl:template>
  <xsl:template match="iwmo:Voorletters"><iwmo:Voorletters><xsl:apply-templates select="node()"/></iwmo:Voorletters></xsl:template>
  <xsl:template match="iwmo:Voornamen"><iwmo:Voornamen><xsl:apply-templates select="node()"/></iwmo:Voornamen></xsl:template>
  <xsl:template match="iwmo:Voorvoegsel"><iwmo:Voorvoegsel><xsl:apply-templates select="node()"/></iwmo:Voorvoegsel></xsl:template>
  <xsl:template match="iwmo:Vorm"><iwmo:Vorm><xsl:apply-templates select="node()"/></iwmo:Vorm></xsl:template>
  <!-- END generated literal templates -->

</xsl:stylesheet>
